"""Lever tables from finished runs: the scorecard's own claim functions applied to the tables of a
run made with one lever changed (each run is a copy of the default run with a config layer on top,
e.g. `snakemake --configfile config.yaml lever.yaml <targets>`; docs/stages.md lists the layers).
Prints one markdown row per run.

    python docs/levers/read_runs.py ensemble LABEL=RESULTS_DIR [LABEL=RESULTS_DIR ...]
    python docs/levers/read_runs.py swa LABEL=RESULTS_DIR [...]
    python docs/levers/read_runs.py connector LABEL=RESULTS_DIR [...]   (against that run's Bezier curves)
    python docs/levers/read_runs.py mconnector LABEL=RESULTS_DIR [...]  (surface and centres, same reference)
"""
import sys
from pathlib import Path

import pandas as pd

from losslab import scorecard

BASE = "digits/simplecnn"


def bezier_tables(res: Path, name: str) -> pd.DataFrame:
    """The ``name`` table of every unaligned Bezier curve of a run."""
    files = sorted((res / BASE / "curves/bezier1/default").glob(f"seed*-seed*/{name}.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files if ".weight_matching" not in str(f)], ignore_index=True)


def connector_paths(res: Path) -> pd.DataFrame:
    paths = []
    for f in sorted((res / BASE / "connectors/default").glob("seeds*-*/path.parquet")):
        a, b = f.parent.name.removeprefix("seeds").split("-")
        paths.append(pd.read_parquet(f).assign(seed_a=int(a), seed_b=int(b)))
    return pd.concat(paths, ignore_index=True)


def ensemble(res: Path) -> tuple[dict, str]:
    r = scorecard.ensemble_phi03(bezier_tables(res, "ensemble"))
    return r, r["measured"]


def swa(res: Path) -> tuple[dict, str]:
    r = scorecard.swa_high_lr(pd.read_parquet(res / BASE / "swa/summary.parquet"))
    return r, r["measured"]


def connector(res: Path) -> tuple[dict, str]:
    path = connector_paths(res)
    tops = path[(path.split == "train") & (path.path == "connector")].groupby(["seed_a", "seed_b"])["loss"].max()
    return scorecard.connector_low_loss(path, bezier_tables(res, "along")), ", ".join(f"{v:.3f}" for v in tops)


def mconnector(res: Path) -> tuple[dict, str]:
    surface = pd.concat([pd.read_parquet(f).assign(source_file=str(f))
                         for f in sorted((res / BASE / "mconnectors/default").glob("seeds*/surface.parquet"))])
    centre = pd.concat([pd.read_parquet(f) for f in (res / BASE / "mconnectors/default").glob("centre-*/centre.parquet")])
    along = bezier_tables(res, "along")
    r = scorecard.mconnector_low_loss(surface, along)
    c = scorecard.mconnector_centre_low_loss(centre, along)
    return r, (f"{r['measured']}; centres: {scorecard.interval_text(pd.Series(c))} ({c['measured']}), "
               f"{c['verdict']}")


what, measured = {"ensemble": (ensemble, "measured"), "swa": (swa, "measured"),
                  "connector": (connector, "largest train loss along each connector"),
                  "mconnector": (mconnector, "surface train loss; centre / Bezier [95 % interval]")}[sys.argv[1]]
print(f"| lever | effect [95 % interval] | replicates | {measured} | verdict |\n|---|---|---|---|---|")
for arg in sys.argv[2:]:
    label, res = arg.rsplit("=", 1)
    r, text = what(Path(res))
    print(f"| {label} | {scorecard.interval_text(pd.Series(r))} | {r['n_replicates']} | {text} | {r['verdict']} |")
