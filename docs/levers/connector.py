"""Lever study of the connector's low-loss claim: the scorecard's own claim function applied to the
connectors of a run made with one lever changed (the default run with a config layer, for example
`connectors: {steps: 1000}`, on the targets `connectors/default/seeds{a}-{b}/path.parquet`), against
the default run's Bezier curves on the same pairs. Prints one markdown row per run.

    python docs/levers/connector.py results LABEL=LEVER_RESULTS [...]
"""
import sys
from pathlib import Path

import pandas as pd

from losslab import scorecard

BASE = "digits/simplecnn"
default = Path(sys.argv[1])
along = pd.concat([pd.read_parquet(f) for f in sorted((default / BASE / "curves/bezier1/default").glob("seed*-seed*/along.parquet"))
                   if ".weight_matching" not in str(f)], ignore_index=True)
print("| lever | largest train loss along each connector | ratio to the Bezier curve [95 % interval] | verdict |")
print("|---|---|---|---|")
for arg in sys.argv[2:]:
    label, res = arg.rsplit("=", 1)
    paths = []
    for f in sorted((Path(res) / BASE / "connectors/default").glob("seeds*-*/path.parquet")):
        a, b = f.parent.name.removeprefix("seeds").split("-")
        paths.append(pd.read_parquet(f).assign(seed_a=int(a), seed_b=int(b)))
    path = pd.concat(paths, ignore_index=True)
    tops = path[(path.split == "train") & (path.path == "connector")].groupby(["seed_a", "seed_b"])["loss"].max()
    r = scorecard.connector_low_loss(path, along)
    print(f"| {label} | {', '.join(f'{v:.3f}' for v in tops)} | {scorecard.interval_text(pd.Series(r))} | {r['verdict']} |")
