"""Lever study of the tunnel-width claims: the scorecard's effect (Spearman rank correlation of the
width with the swept value, hierarchical bootstrap interval) on a finished run's widths, measured
as absolute width and as width relative to the optimum's norm. Prints a markdown table.

    python docs/levers/tunnel_widths.py results/digits/simplecnn/tunnels/widths.parquet [more runs' tables]
"""
import sys

import pandas as pd

from losslab import scorecard

print("| run | claim | width | values | mean widths | effect [95 % interval] | verdict |")
print("|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    w = pd.read_parquet(path)
    for param in scorecard.TUNNEL_PARAMS:
        if (w.param == param).sum() == 0:
            continue
        for measure in ("width", "width_rel"):
            r = scorecard.tunnel_trend(w.assign(width=w[measure]), param)
            means = w[w.param == param].groupby("value")[measure].mean()
            print(f"| {path} | {r['claim']} | {measure} | {', '.join(f'{v:g}' for v in means.index)} | "
                  f"{', '.join(f'{m:.3g}' for m in means)} | {scorecard.interval_text(pd.Series(r))} | {r['verdict']} |")
