"""Benchmark: linear barriers before and after permutation alignment, and what alignment costs.

Not a test. Trains two endpoints with the library (the embedded default: digits, SimpleCNN, Adam,
seeds 0 and 1), aligns B to A by weight matching and by activation matching, and evaluates the
straight line naive / aligned / aligned+REPAIR on the default evaluation subsets with BatchNorm
statistics recomputed at every point. Prints the midpoint and maximum barriers of the train loss
and the test error, and the time each alignment takes as a ratio to one evaluation of the line
(measured in the same run).

    python benchmarks/bench_align.py [--epochs 25] [--width 1.0] [--batchnorm] [--points 11]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from losslab import align, data  # noqa: E402
from losslab.device import get_device  # noqa: E402
from losslab.flat import FlatModel  # noqa: E402
from losslab.models import build_model  # noqa: E402
from losslab.train import TrainSettings, train_endpoint  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batchnorm", action="store_true")
    ap.add_argument("--points", type=int, default=11, help="alphas on the line (odd, so 0.5 is on it)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)

    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 500, 1000, 512, seed=0, device=device)
    model_spec = {"name": "simplecnn", "width": args.width, "dropout": 0.0, "batchnorm": args.batchnorm, "options": {}}
    settings = TrainSettings(optimizer="adam", lr=1e-3, batch_size=64, epochs=args.epochs)
    t = time.perf_counter()
    a, b = (train_endpoint(model_spec, settings, ds, ev, seed=s, device=device).point for s in (0, 1))
    print(f"trained two endpoints ({args.epochs} epochs each) in {time.perf_counter() - t:.1f} s")

    fm = FlatModel(build_model(model_spec, ds.in_shape, ds.num_outputs).to(device))
    t = time.perf_counter()
    spec = align.permutation_spec(fm.module, ev.bn_x[:8])
    spec_s = time.perf_counter() - t
    print(f"spec: {len(spec.groups)} groups {[(g.name, g.size) for g in spec.groups]}, "
          f"REPAIR layers {list(spec.repair_layers)}, derived in {spec_s * 1e3:.1f} ms")
    found = {m: align.align(spec, fm, a, b, m, ev.bn_x) for m in align.METHODS}
    for m, al in found.items():
        print(f"{m}: {al.seconds * 1e3:.1f} ms, history {[round(h, 4) for h in al.history]}, converged {al.converged}")

    alphas = [i / (args.points - 1) for i in range(args.points)]
    t = time.perf_counter()
    naive = align.line_rows(fm, a.flat, b.flat, alphas, ev, ds.task)
    line_s = time.perf_counter() - t
    for m, al in found.items():
        print(f"{m}: alignment / one {args.points}-point line evaluation = {al.seconds / line_s:.3f}")
    t = time.perf_counter()
    rows = align.compare_lines(spec, fm, a, b, ev, ds.task, alphas,
                               {m: align.permute(spec, fm, b.flat, None, al.perms)[0] for m, al in found.items()})
    print(f"compare_lines (naive + 2 x aligned + 2 x REPAIR): {time.perf_counter() - t:.1f} s "
          f"(= {(time.perf_counter() - t) / line_s:.2f} line evaluations)")
    assert len(naive) == len(rows[rows.method == "naive"])

    s = align.barriers(rows)
    s = s[((s.split == "train") & (s.metric == "loss")) | ((s.split == "test") & (s.metric == "error"))]
    print(s.sort_values(["split", "alignment", "method"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
