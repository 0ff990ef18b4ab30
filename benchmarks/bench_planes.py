"""Benchmark: the plane grid engine against a faithful one-point-at-a-time reference loop.

Not a test. Same run, same model, same points, same subsets:

* reference: for each point load the weights into the module, evaluate the train and test
  subsets in minibatches of 128 with a host sync (``.item()``) per batch (what the anchors do);
* engine variants: ``losslab.planes.GridEngine`` with and without the first-layer trick and
  with and without ``torch.compile``.

Prints points/s, the ratio to the reference, and the achieved GFLOP/s (full forward FLOPs of
the model per point, train + test) as a fraction of a large-GEMM calibration in the same run.

    python benchmarks/bench_planes.py [--points 32] [--threads 1] [--device auto]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from losslab.data import EvalData  # noqa: E402
from losslab.device import get_device  # noqa: E402
from losslab.flat import FlatModel  # noqa: E402
from losslab.models import build_model  # noqa: E402
from losslab.planes import EngineOptions, GridEngine, forward_flops, plane_from_points, reference_point  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_gflops(device, n=1024, reps=20) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * n**3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=512, help="train and test subset size each")
    ap.add_argument("--batchnorm", action="store_true")
    ap.add_argument("--variants", default="eager,eager+first,compile,compile+first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    g = torch.Generator().manual_seed(0)
    shape = (3, 32, 32)
    n = args.n
    ev = EvalData(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g),
                  torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g),
                  torch.randn(256, *shape, generator=g))
    ev = EvalData(*(t.to(device) for t in (ev.train_x, ev.train_y, ev.test_x, ev.test_y, ev.bn_x)))
    spec = {"name": "simplecnn", "batchnorm": args.batchnorm}
    ws = []
    for s in range(3):
        torch.manual_seed(s)
        ws.append(FlatModel(build_model(spec, shape, 10)).flatten())
    torch.manual_seed(0)
    fm = FlatModel(build_model(spec, shape, 10).to(device))
    plane = plane_from_points(*[w.to(device) for w in ws])
    rng = np.random.default_rng(0)
    coords = np.stack([rng.uniform(-2, 10, args.points), rng.uniform(-2, 8, args.points)], 1)
    flops_point = forward_flops(fm.module.eval(), ev.train_x[:1]) * 2 * n  # train + test

    print(f"device {device}, threads {torch.get_num_threads()}, SimpleCNN {shape}, {n} train + {n} test, "
          f"{args.points} points, BN={args.batchnorm}; model forward {flops_point / 2 / n / 1e6:.2f} MFLOP/sample")
    calib = gemm_gflops(device)
    print(f"GEMM calibration (1024^3 fp32): {calib:.1f} GFLOP/s")

    # reference (warm up one point first)
    vecs = plane.at(torch.as_tensor(coords, dtype=torch.float32, device=device))
    reference_point(fm, vecs[0], ev, "classification")
    sync(device)
    t = time.perf_counter()
    ref = [reference_point(fm, v, ev, "classification") for v in vecs]
    sync(device)
    t_ref = time.perf_counter() - t
    ref_pps = args.points / t_ref
    print(f"{'reference loop':28s} {ref_pps:8.2f} points/s  {flops_point * ref_pps / 1e9:7.2f} GFLOP/s "
          f"({flops_point * ref_pps / 1e9 / calib:5.1%} of GEMM)")
    ref_loss = np.array([r["train_loss"] for r in ref])

    for variant in args.variants.split(","):
        opts = EngineOptions(first_layer="on" if "first" in variant else "off",
                             compile="on" if "compile" in variant else "off", memory_budget_mb=2048)
        t = time.perf_counter()
        eng = GridEngine(fm, plane, ev, "classification", opts)
        eng.evaluate(coords[:2])  # warm-up (includes compilation for compiled variants)
        sync(device)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        res = eng.evaluate(coords)
        sync(device)
        dt = time.perf_counter() - t
        pps = args.points / dt
        err = np.abs(res["train_loss"] - ref_loss).max()
        print(f"engine {variant:21s} {pps:8.2f} points/s  {flops_point * pps / 1e9:7.2f} GFLOP/s "
              f"({flops_point * pps / 1e9 / calib:5.1%} of GEMM)  ratio {pps / ref_pps:5.2f}x  "
              f"setup+warm-up {setup:5.1f} s  max |loss - ref| {err:.1e}")
    print("(GFLOP/s counts the full forward FLOPs of each point, also where the first-layer trick skips them)")


if __name__ == "__main__":
    main()
