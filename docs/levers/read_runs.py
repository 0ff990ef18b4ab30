"""Lever tables from finished runs: the scorecard's own claim functions applied to the tables of a
run made with one lever changed (each run is the default run with a config layer on top, e.g.
`snakemake --configfile config.yaml lever.yaml <targets>`; docs/stages.md lists the layers).
Prints one markdown row per run.

    python docs/levers/read_runs.py ensemble LABEL=RESULTS_DIR [LABEL=RESULTS_DIR ...]
    python docs/levers/read_runs.py swa LABEL=RESULTS_DIR [...]
"""
import sys
from pathlib import Path

import pandas as pd

from losslab import scorecard

BASE = "digits/simplecnn"


def ensemble(res: Path) -> dict:
    files = sorted((res / BASE / "curves/bezier1/default").glob("seed*-seed*/ensemble.parquet"))
    t = pd.concat([pd.read_parquet(f) for f in files if ".weight_matching" not in str(f)], ignore_index=True)
    return scorecard.ensemble_phi03(t)


def swa(res: Path) -> dict:
    return scorecard.swa_high_lr(pd.read_parquet(res / BASE / "swa/summary.parquet"))


what = {"ensemble": ensemble, "swa": swa}[sys.argv[1]]
print("| lever | effect [95 % interval] | replicates | measured | verdict |\n|---|---|---|---|---|")
for arg in sys.argv[2:]:
    label, res = arg.rsplit("=", 1)
    r = what(Path(res))
    print(f"| {label} | {scorecard.interval_text(pd.Series(r))} | {r['n_replicates']} | {r['measured']} | {r['verdict']} |")
