"""Benchmark: the plane engine against a faithful per-point reference loop, on what users run.

Not a test. Same process, same weights, same points, same evaluation subsets:

* **reference loop** (the field's plane loop): for each point load the flat vector into the
  module, recompute BatchNorm statistics when the model has BatchNorm (``update_bn`` over a
  DataLoader of the BN subset), then one train pass and one test pass over a torch ``DataLoader``
  of a ``TensorDataset`` in minibatches of 128, built each time as a loader does, with one host
  sync per batch;
* **engine**: ``losslab.planes.GridEngine`` with the job's options (default: everything chosen
  on-line), built and calibrated once per case (its setup time is printed separately).

Cases: the default run's own planes -- the curve plane (w1, w2 and the bend of the trained
bezier1 curve between endpoints seed0/seed1, 21 x 21, margin 0.25), the three-endpoint plane
(seeds 0, 1, 2, 21 x 21) and a tunnel slice (random plane with unit directions around seed 0,
extent 20, 15 x 15) -- plus a CIFAR-shaped case (SimpleCNN on 3 x 32 x 32, random images and
weights, as in earlier versions of this benchmark). Weights come from a completed default run
(``--results``) or are rebuilt with the library exactly as the workflow trains them
(``--quick``: fewer epochs, labelled so). Every case runs at each thread count of ``--threads``.

Printed per case: ms per point of reference and engine, their ratio, GFLOP/s (full forward FLOPs
of each point, BN recompute included) and its fraction of a large GEMM timed in the same run at
the same thread count, and the largest |engine - reference| over all points and columns (and
over the loss columns alone: an accuracy differs by 1/n where one near-tied prediction flips
under float rounding, which is counted separately).

    python benchmarks/bench_planes.py                      # all cases, 1 and 2 threads
    python benchmarks/bench_planes.py --quick --threads 1  # fast look, rebuilt weights with few epochs
    python benchmarks/bench_planes.py --device cuda --cases curve,cifar --big 1000   # see gpu.sh
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from losslab import curves, data, io, planes  # noqa: E402
from losslab.config import validate_config  # noqa: E402
from losslab.device import get_device  # noqa: E402
from losslab.flat import FlatModel, loss_fn  # noqa: E402
from losslab.models import build_model  # noqa: E402
from losslab.train import TrainSettings, train_endpoint  # noqa: E402

COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass
class Case:
    name: str
    fm: FlatModel
    plane: planes.Plane
    coords: np.ndarray  # [P, 2]
    ev: data.EvalData
    task: str


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(device, n=1024, reps=10) -> float:
    """Best-of-3 GFLOP/s of an n^3 fp32 matrix product (the machine's attainable arithmetic rate)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * n**3 / best / 1e9


# ----- the reference loop ------------------------------------------------------------------------
def reference_loop(fm: FlatModel, vecs: torch.Tensor, ev: data.EvalData, task: str, device,
                   batch_size: int = 128, bn_batch: int = planes.BN_BATCH) -> np.ndarray:
    """The field's per-point plane loop; ``[P, 4]`` in the order of COLUMNS. Loaders iterate
    CPU tensors and each minibatch goes to the device on its own, as a data loader's would."""
    module = fm.module
    lossf = loss_fn(task)
    loaders = [DataLoader(TensorDataset(*(t.cpu() for t in ev.split(s))), batch_size=batch_size) for s in ("train", "test")]
    bn_loader = DataLoader(TensorDataset(ev.bn_x.cpu()), batch_size=bn_batch)
    rows = []
    for v in vecs:
        fm.load_into(v.to(device), module)
        if fm.has_bn:
            torch.optim.swa_utils.update_bn(bn_loader, module, device=device)
        module.eval()
        row = []
        with torch.no_grad():
            for loader in loaders:
                total = correct = 0.0
                n = 0
                for x, y in loader:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    out = module(x)
                    hit = (out.argmax(-1) == y).sum() if task == "classification" else torch.zeros((), device=device)
                    l, c = torch.stack([lossf(out, y) * y.shape[0], hit.to(out.dtype)]).tolist()  # one sync
                    total, correct, n = total + l, correct + c, n + y.shape[0]
                row += [total / n, correct / n if task == "classification" else math.nan]
        rows.append(row)
    return np.array(rows)


# ----- the default run's weights -----------------------------------------------------------------
def default_config() -> dict:
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))


def run_weights(cfg: dict, results: Path, required: bool, quick: bool, device, save: Path | None):
    """Endpoints seed0..2 and the bezier1 seed0-seed1 curve of the default run: read from a
    completed run in ``results`` when it has them (an error if ``required``), else trained here
    exactly as the workflow does (config.yaml settings; ``quick``: 3 endpoint and 3 curve
    epochs). Returns
    (model spec, dataset, evaluation subsets, {seed: flat vector}, curve checkpoint, source)."""
    d, e = cfg["dataset"], cfg["evaluation"]
    ds = data.load_dataset(d["name"], d["data_dir"], d["download"], d["split_seed"], d["test_fraction"], d["augment"])
    ev = data.eval_data(ds, e["train_size"], e["test_size"], e["bn_size"], e["seed"], device)
    base = results / d["name"] / cfg["model"]["name"]
    ends = {s: base / "endpoints" / "default" / f"seed{s}" / "model.pt" for s in (0, 1, 2)}
    curve_path = base / "curves" / "bezier1" / "default" / "seed0-seed1" / "curve.pt"
    spec = cfg["model"]
    if all(p.exists() for p in ends.values()) and curve_path.exists():
        pts = {s: io.load_point(p) for s, p in ends.items()}
        spec = pts[0].model_spec
        return spec, ds, ev, {s: p.flat for s, p in pts.items()}, io.load_tensors(curve_path), f"read from {base}"
    if required:
        raise SystemExit(f"{base} does not hold the default run's checkpoints ({ends[0]}, {curve_path})")
    train = dict(cfg["endpoints"]["train"])
    ccfg = dict(cfg["curves"])
    if quick:
        train["epochs"], ccfg["epochs"] = 3, 3
    t0 = time.perf_counter()
    pts = {s: train_endpoint(spec, TrainSettings.from_dict(train), ds, ev, s, device).point for s in (0, 1, 2)}
    res = curves.train_curve(spec, curves.CurveSettings.from_dict(ccfg), ds, ev, pts[0], pts[1], "bezier", 1,
                             ccfg["seed"], device)
    ck = curves.curve_checkpoint("bezier", res.control, res.meta)
    if save is not None:
        out = save / d["name"] / spec["name"]
        for s, p in pts.items():
            p.meta.update(setting="default")
            io.save_point(p, out / "endpoints" / "default" / f"seed{s}" / "model.pt")
        curves.save_curve("bezier", res.control, res.meta, out / "curves" / "bezier1" / "default" / "seed0-seed1" / "curve.pt")
    how = f"QUICK: {train['epochs']} endpoint / {ccfg['epochs']} curve epochs" if quick else \
        f"{train['epochs']} endpoint / {ccfg['epochs']} curve epochs as config.yaml"
    return spec, ds, ev, {s: p.flat for s, p in pts.items()}, ck, f"rebuilt here ({how}, {time.perf_counter() - t0:.0f} s)"


def grid(plane: planes.Plane, margin: float, resolution: int, extent: float | None = None) -> np.ndarray:
    """All points of the plane's G x G grid, as the plane_tile jobs evaluate them."""
    xs, ys = planes.grid_axes(planes.grid_bounds(plane, margin, extent), resolution)
    x, y, _, _ = planes.tile_coords(xs, ys, 1, 0, 0)
    return np.stack([x, y], 1)


def run_cases(cfg, spec, ds, ev, w, curve_ck, names, max_points: int | None) -> list[Case]:
    """The default run's planes as benchmark cases (``max_points``: an evenly spaced subset)."""
    fm = FlatModel(build_model(spec, ds.in_shape, ds.num_outputs).to(ev.train_x.device))
    pl, sl = cfg["planes"], cfg["tunnels"]
    out = []
    if "curve" in names:
        plane = planes.curve_plane(curve_ck)
        out.append(Case("curve plane (bezier1 seed0-seed1)", fm, plane, grid(plane, pl["margin"], pl["resolution"]), ev, ds.task))
    if "endpoints" in names:
        plane = planes.plane_from_points(w[0], w[1], w[2])
        out.append(Case("three-endpoint plane (seeds 0,1,2)", fm, plane, grid(plane, pl["margin"], pl["resolution"]), ev, ds.task))
    if "tunnel" in names:
        plane = planes.random_plane(w[sl["slices"]["seed"]], sl["direction_seed"] + sl["slices"]["seed"], "unit")
        res = sl["slices"]["resolution"] or pl["resolution"]
        out.append(Case(f"tunnel slice (seed {sl['slices']['seed']}, unit, extent {sl['slices']['extent']:g})", fm, plane,
                        grid(plane, 0.0, res, sl["slices"]["extent"]), ev, ds.task))
    for c in out:
        if max_points and len(c.coords) > max_points:
            c.coords = c.coords[np.linspace(0, len(c.coords) - 1, max_points).round().astype(int)]
    return out


def cifar_case(device, n: int, points: int, batchnorm: bool = False) -> Case:
    """SimpleCNN on 3 x 32 x 32 with random images and labels, the plane of three random
    initialisations, ``points`` random points on it."""
    g = torch.Generator().manual_seed(0)
    shape = (3, 32, 32)
    ev = data.EvalData(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g),
                       torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g),
                       torch.randn(256, *shape, generator=g))
    ev = data.EvalData(*(t.to(device) for t in (ev.train_x, ev.train_y, ev.test_x, ev.test_y, ev.bn_x)))
    spec = {"name": "simplecnn", "batchnorm": batchnorm}
    ws = []
    for s in range(3):
        torch.manual_seed(s)
        ws.append(FlatModel(build_model(spec, shape, 10)).flatten())
    torch.manual_seed(0)
    fm = FlatModel(build_model(spec, shape, 10).to(device))
    rng = np.random.default_rng(0)
    coords = np.stack([rng.uniform(-2, 10, points), rng.uniform(-2, 8, points)], 1)
    return Case(f"CIFAR-shaped SimpleCNN 3x32x32{' BN' if batchnorm else ''} (random data)", fm,
                planes.plane_from_points(*[w.to(device) for w in ws]), coords, ev, "classification")


# ----- measuring ---------------------------------------------------------------------------------
def flops_per_point(case: Case) -> float:
    """Forward FLOPs of one point: train and test passes, plus the BN recompute pass."""
    n = case.ev.train_x.shape[0] + case.ev.test_x.shape[0] + (case.ev.bn_x.shape[0] if case.fm.has_bn else 0)
    return planes.forward_flops(case.fm.module, case.ev.train_x[:1]) * n


def measure(case: Case, device, gemm: float, options: planes.EngineOptions, ref: tuple | None = None) -> dict:
    """Reference loop and engine on one case; ``ref`` (seconds, values) reuses a reference
    measured before in this run (engine variants of one case)."""
    vecs = case.plane.at(torch.as_tensor(case.coords, dtype=torch.float32, device=device))
    if ref is None:
        reference_loop(case.fm, vecs[:1], case.ev, case.task, device)  # warm-up
        sync(device)
        t = time.perf_counter()
        values = reference_loop(case.fm, vecs, case.ev, case.task, device)
        sync(device)
        ref = (time.perf_counter() - t, values)
    t = time.perf_counter()
    eng = planes.GridEngine(case.fm, case.plane, case.ev, case.task, options, device)
    eng.plan(len(case.coords))
    eng.evaluate(case.coords[:1])  # calibration happens here
    eng.evaluate(case.coords[:eng.point_chunk])  # compilation (when on) for a full point chunk
    sync(device)
    setup = time.perf_counter() - t
    t = time.perf_counter()
    res = eng.evaluate(case.coords)
    sync(device)
    t_eng = time.perf_counter() - t
    got = np.stack([res[c] for c in COLUMNS], 1)
    diff = np.abs(got - ref[1])
    diff[np.isnan(got) & np.isnan(ref[1])] = 0.0
    n_split = np.array([case.ev.train_x.shape[0], case.ev.test_x.shape[0]])
    flips = np.rint(diff[:, [1, 3]] * n_split) if case.task == "classification" else np.zeros((len(got), 2))
    fl = flops_per_point(case)
    p = len(case.coords)
    return {"case": case.name, "points": p, "samples": int(case.ev.train_x.shape[0] + case.ev.test_x.shape[0]),
            "ref_ms": ref[0] / p * 1e3, "engine_ms": t_eng / p * 1e3, "ratio": ref[0] / t_eng,
            "ratio_with_setup": ref[0] / (t_eng + setup), "setup_s": setup,
            "engine_gflops": fl * p / t_eng / 1e9, "ref_gflops": fl * p / ref[0] / 1e9, "gemm_gflops": gemm,
            "max_abs_err": float(diff.max()), "max_loss_err": float(diff[:, [0, 2]].max()),
            "flipped_predictions": int(flips.sum()), "points_with_flips": int((flips.sum(1) > 0).sum()),
            "path": eng.describe(), "_ref": ref}


def report(r: dict) -> str:
    d = r["path"]
    path = (f"{d['engine_mode']}, {d['point_chunk']} pt x {d['data_chunk']} samples/forward"
            + (", channels-last" if d["channels_last"] else "")
            + (f", dense {'+'.join(d['dense_layers'])}" if d["dense_layers"] else "")
            + (", first-layer trick" if d["first_layer_trick"] else "") + (", compiled" if d["compiled"] else ""))
    return (f"  {r['case']} [{r['points']} points, {r['samples']} samples]\n"
            f"    reference {r['ref_ms']:8.2f} ms/pt ({r['ref_gflops']:6.1f} GFLOP/s, {r['ref_gflops'] / r['gemm_gflops']:5.1%} of GEMM)\n"
            f"    engine    {r['engine_ms']:8.2f} ms/pt ({r['engine_gflops']:6.1f} GFLOP/s, {r['engine_gflops'] / r['gemm_gflops']:5.1%} of GEMM)"
            f"  ratio {r['ratio']:5.2f}x  (with setup {r['setup_s']:.2f} s: {r['ratio_with_setup']:.2f}x)"
            f"\n    max |engine - reference| {r['max_abs_err']:.1e} over all points and columns; loss columns {r['max_loss_err']:.1e}"
            + (f"; accuracy: {r['flipped_predictions']} prediction(s) flipped at {r['points_with_flips']} point(s) "
               "(near-tied logits: argmax changes with float rounding)" if r["flipped_predictions"] else "") + "\n"
            f"    path: {path}")


def big_plane(device, resolution: int, n: int, seconds: float, options: planes.EngineOptions) -> dict:
    """Time a resolution x resolution plane of the CIFAR-shaped SimpleCNN with n + n random
    images, in blocks of grid rows; stops after ``seconds`` and extrapolates to the whole plane."""
    case = cifar_case(device, n, 1)
    xs, ys = planes.grid_axes((-2.0, 10.0, -2.0, 8.0), resolution)
    t = time.perf_counter()
    eng = planes.GridEngine(case.fm, case.plane, case.ev, case.task, options, device)
    eng.plan(resolution * resolution)
    eng.evaluate(np.zeros((1, 2)))  # calibration
    eng.evaluate(np.zeros((eng.point_chunk, 2)))  # compilation (when on) for a full point chunk
    sync(device)
    setup = time.perf_counter() - t
    done, t0 = 0, time.perf_counter()
    rows = max(1, min(resolution, 16384 // resolution))
    finite = 0
    for lo in range(0, resolution, rows):
        yy, xx = np.meshgrid(ys[lo: lo + rows], xs, indexing="ij")
        res = eng.evaluate(np.stack([xx.ravel(), yy.ravel()], 1))
        done += xx.size
        finite += int(np.isfinite(res["train_loss"]).sum())
        if time.perf_counter() - t0 > seconds:
            break
    sync(device)
    dt = time.perf_counter() - t0
    total = resolution * resolution
    return {"resolution": resolution, "samples": 2 * n, "points_done": done, "seconds": dt, "setup_s": setup,
            "points_per_s": done / dt, "full_plane_s": setup + dt * total / done, "finite_fraction": finite / done,
            "path": eng.describe(), "complete": done == total}


def parse_variant(text: str) -> dict:
    """``key=value+key=value`` -> EngineOptions keyword arguments (numbers converted)."""
    out = {}
    for part in filter(None, text.split("+")):
        k, _, v = part.partition("=")
        out[k] = int(v) if v.isdigit() else (float(v) if v.replace(".", "", 1).isdigit() else v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=None, help="a completed default run (default: results/ if it has one)")
    ap.add_argument("--quick", action="store_true", help="rebuild weights with 3 endpoint and 3 curve epochs")
    ap.add_argument("--save-weights", type=Path, default=None, help="write rebuilt checkpoints here (results layout)")
    ap.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cases", default="curve,endpoints,tunnel,cifar")
    ap.add_argument("--points", type=int, default=0, help="at most this many (evenly spaced) points per plane; 0: all")
    ap.add_argument("--cifar-points", type=int, default=16)
    ap.add_argument("--cifar-n", type=int, default=512, help="train and test images each of the CIFAR-shaped case")
    ap.add_argument("--variants", default="", help="extra engine variants for the CIFAR case, e.g. "
                    "'lower=off+first_layer=off,compile=on' (the default options always run)")
    ap.add_argument("--big", type=int, default=0, help="also time a BIG x BIG plane of the CIFAR-shaped case")
    ap.add_argument("--big-n", type=int, default=512)
    ap.add_argument("--big-seconds", type=float, default=300, help="stop the big plane after this long and extrapolate")
    ap.add_argument("--memory-budget-mb", type=float, default=None, help="engine memory budget (default: config.yaml's)")
    ap.add_argument("--engine", default="", help="engine options over config.yaml's planes.engine, e.g. 'compile=off'")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    args = ap.parse_args()

    device = get_device(args.device)
    # plain fp32 everywhere (TF32 convolutions would differ from the reference by ~1e-3)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = default_config()
    budget = args.memory_budget_mb or cfg["compute"]["memory_budget_mb"]
    options = planes.EngineOptions.from_dict({**cfg["planes"]["engine"], **parse_variant(args.engine)}, budget)
    names = set(args.cases.split(","))
    unknown = names - {"curve", "endpoints", "tunnel", "cifar"}
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; allowed: curve, endpoints, tunnel, cifar")
    out = {"device": str(device), "torch": torch.__version__, "runs": [], "big": None}
    cases = []
    if names & {"curve", "endpoints", "tunnel"}:
        spec, ds, ev, w, ck, source = run_weights(cfg, args.results or REPO / "results", args.results is not None,
                                                  args.quick, device, args.save_weights)
        out["weights"] = source
        print(f"default run weights: {source}")
        cases = run_cases(cfg, spec, ds, ev, w, ck, names, args.points or None)
    if "cifar" in names:
        cases.append(cifar_case(device, args.cifar_n, args.cifar_points))
    threads = [int(t) for t in args.threads.split(",")] if device.type == "cpu" else [torch.get_num_threads()]
    for nt in threads:
        torch.set_num_threads(nt)
        gemm = gemm_gflops(device)
        print(f"\n== device {device}, {torch.get_num_threads()} thread(s); GEMM 1024^3 fp32: {gemm:.1f} GFLOP/s ==")
        for case in cases:
            r = measure(case, device, gemm, options)
            out["runs"].append({"threads": nt, "variant": "default", **{k: v for k, v in r.items() if k != "_ref"}})
            print(report(r))
            if case.name.startswith("CIFAR"):
                for v in filter(None, args.variants.split(",")):
                    rv = measure(case, device, gemm, planes.EngineOptions(**{**options.__dict__, **parse_variant(v)}), r["_ref"])
                    rv["case"] += f" -- engine variant {v}"
                    out["runs"].append({"threads": nt, "variant": v, **{k: x for k, x in rv.items() if k != "_ref"}})
                    print(report(rv))
    if args.big:
        big = big_plane(device, args.big, args.big_n, args.big_seconds, options)
        out["big"] = big
        print(f"\n{args.big} x {args.big} plane, CIFAR-shaped SimpleCNN, {args.big_n} + {args.big_n} images: "
              f"{big['points_done']} points in {big['seconds']:.1f} s ({big['points_per_s']:.0f} points/s), setup {big['setup_s']:.1f} s; "
              f"whole plane {'took' if big['complete'] else 'estimated at'} {big['full_plane_s']:.0f} s; path {big['path']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
