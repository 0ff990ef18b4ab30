"""Measurement: linear barriers before and after alignment for networks without BatchNorm.

Not a test. On digits (CPU), trains endpoints of the built-in ``transformer`` (LayerNorm,
``nn.MultiheadAttention``) and of a GroupNorm conv network (``gn_cnn`` below: SimpleCNN's layout
with GroupNorm(4, C) after each conv, in a residual-free stack) at several widths, aligns B to A by
weight matching and by activation matching, and evaluates the straight line naive / aligned /
aligned+REPAIR on the default evaluation subsets (the whole digits splits). Prints, per model and
width, the mean over the seed pairs of the train-loss and test-error barriers, and the time taken.
The numbers in docs/stages.md come from

    python benchmarks/align_architectures.py --widths 0.5 1 2 --seeds 0 1 2 --epochs 25
"""
from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def gn_cnn(input_shape, num_outputs, width=1.0, groups=4, channels=(16, 32, 32)):
    """SimpleCNN with GroupNorm(groups, C) after every conv (channels rounded to a multiple of groups)."""
    layers, c_in = [], input_shape[0]
    h, w = input_shape[1:]
    for c in channels:
        c_out = groups * max(1, round(c * width / groups))
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.MaxPool2d(2), nn.ReLU()]
        c_in, h, w = c_out, h // 2, w // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * h * w, num_outputs))


def main():
    from losslab import align, data
    from losslab.flat import FlatModel
    from losslab.models import build_model
    from losslab.train import TrainSettings, train_endpoint

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["transformer", "gn_cnn"])
    ap.add_argument("--widths", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--points", type=int, default=11, help="alphas on the line (odd, so 0.5 is on it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--csv", default=None, help="also write the per-pair barriers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 2000, 1000, 512, seed=0)
    alphas = torch.linspace(0, 1, args.points).tolist()
    rows = []
    for model in args.models:
        for width in args.widths:
            if model == "transformer":
                spec_m = {"name": "transformer", "width": width, "dropout": 0.0, "batchnorm": False, "options": {}}
            else:
                spec_m = {"name": f"{Path(__file__).resolve()}:gn_cnn", "options": {"width": width}}
            t0 = time.perf_counter()
            points = {s: train_endpoint(spec_m, TrainSettings(epochs=args.epochs), ds, ev, seed=s).point
                      for s in args.seeds}
            t_train = time.perf_counter() - t0
            fm = FlatModel(build_model(spec_m, ds.in_shape, ds.num_outputs))
            spec = align.permutation_spec(fm.module, ev.bn_x[:8])
            for sa, sb in combinations(args.seeds, 2):
                a, b = points[sa], points[sb]
                t1 = time.perf_counter()
                aligned = {m: align.permute(spec, fm, b.flat, None, align.align(spec, fm, a, b, m, ev.bn_x).perms)[0]
                           for m in ("weight_matching", "activation_matching")}
                lines = align.compare_lines(spec, fm, a, b, ev, "classification", alphas, aligned)
                bar = align.barriers(lines)
                for _, r in bar.iterrows():
                    rows.append({"model": model, "width": width, "params": fm.numel, "pair": f"{sa}-{sb}",
                                 "alignment": r["alignment"], "method": r["method"], "split": r["split"],
                                 "metric": r["metric"], "barrier": r["barrier"], "train_s": t_train,
                                 "align_s": time.perf_counter() - t1})
            print(f"{model} width {width}: {fm.numel} parameters, {len(spec.groups)} groups, trained in "
                  f"{t_train:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    keep = ((df.split == "train") & (df.metric == "loss")) | ((df.split == "test") & (df.metric == "error"))
    table = (df[keep].assign(what=lambda d: d.split + " " + d.metric, line=lambda d: d.alignment + "/" + d.method)
             .groupby(["model", "width", "params", "what", "line"])["barrier"].mean().unstack("line"))
    with pd.option_context("display.width", 200, "display.max_columns", 10, "display.precision", 3):
        print(table)
    print(f"total {time.perf_counter() - t_start:.0f} s on {args.threads} thread(s)")


if __name__ == "__main__":
    main()
