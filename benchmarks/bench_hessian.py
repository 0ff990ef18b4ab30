"""Benchmark: our Hessian spectra (losslab.hessian) against a reference loop of PyHessian's kind.

Not a test. On the default model (SimpleCNN on digits) at one endpoint, on the spectra stage's
training subset (500 samples), at one CPU thread by default, it times in the same process:

* one Hessian-vector product: ours (``torch.func.vjp`` of ``grad`` on the flat vector: the
  gradient's graph built once per point, one backward pass per product; one vector and a batch
  of ``--starts``) against the reference (the module's own parameters, the gradient taken with
  ``create_graph=True`` once, then ``torch.autograd.grad`` of it with ``grad_outputs=v`` per
  product: PyHessian's single-batch ``hessian_vector_product``), and against losslab's former
  forward-over-reverse product (``jvp`` of ``grad``, forward and backward redone per vector);
* Lanczos: ``--starts`` starts x ``--steps`` steps with full re-orthogonalisation, ours (the starts
  in lockstep, one batched product per step, re-orthogonalised as one matrix product) against the
  reference (one start at a time, vectors as lists of per-parameter tensors, re-orthogonalised
  against each stored vector in turn, as PyHessian's ``density``); both from the same starts, so
  their Ritz values must agree;
* the Hutchinson trace over ``--probes`` Rademacher probes (ours in chunks through vmap, the
  reference one probe at a time);
* PyHessian itself (``pyhessian.hessian(...).density`` and ``.trace``) when it is installed (it is
  not a dependency: ``pip install pyhessian``).

Prints ms per operation and the ratios reference / ours.

    python benchmarks/bench_hessian.py [--weights endpoint.pt | --results results] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from losslab import data, hessian, io  # noqa: E402
from losslab.flat import FlatModel  # noqa: E402
from losslab.models import build_model  # noqa: E402

SPEC = {"name": "simplecnn", "width": 1.0, "dropout": 0.0, "batchnorm": False, "options": {}}


# ----- the reference: module-based products, one start at a time (PyHessian's kind) -----------
class Reference:
    def __init__(self, module, x, y):
        self.module = module.eval()
        self.params = [p for p in module.parameters() if p.requires_grad]
        module.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x), y)
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)

    def hvp(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(self.grads, self.params, grad_outputs=v, retain_graph=True))


def _dot(a, b):
    return sum((x * y).sum() for x, y in zip(a, b))


def _axpy(a, x, y):  # y + a x
    return [yy + a * xx for xx, yy in zip(x, y)]


def _normalise(v):
    n = math.sqrt(float(_dot(v, v)))
    return [x / (n + 1e-6) for x in v]


def _orthonormal(w, basis):
    for b in basis:
        w = _axpy(-_dot(w, b), b, w)
    return _normalise(w)


def _split(flat: torch.Tensor, params) -> list[torch.Tensor]:
    out, o = [], 0
    for p in params:
        out.append(flat[o: o + p.numel()].view_as(p).to(p.dtype))
        o += p.numel()
    return out


def reference_lanczos(ref: Reference, start: torch.Tensor, steps: int) -> torch.Tensor:
    """One start: PyHessian's density loop (lists of tensors, re-orthogonalised vector by vector)."""
    v = _normalise(_split(start, ref.params))
    basis, alpha, beta = [v], [], []
    w = None
    for i in range(steps):
        if i > 0:
            b = math.sqrt(float(_dot(w, w)))
            beta.append(b)
            v = _orthonormal(w, basis)
            basis.append(v)
        wp = ref.hvp(v)
        a = float(_dot(wp, v))
        alpha.append(a)
        w = _axpy(-a, v, wp) if i == 0 else _axpy(-beta[-1], basis[-2], _axpy(-a, v, wp))
    T = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if beta:
        off = torch.tensor(beta, dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(T).flip(0)


def reference_trace(ref: Reference, probes: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(probes):
        z = [(torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p.dtype) for p in ref.params]
        vals.append(float(_dot(ref.hvp(z), z)))
    return sum(vals) / len(vals)


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        out = fn()
    del out
    return (time.perf_counter() - t) / reps


def _weights(args, ds, ev) -> torch.Tensor:
    if args.weights:
        return io.load_point(args.weights).flat
    if args.results:
        return io.load_point(Path(args.results) / "digits/simplecnn/endpoints/default/seed0/model.pt").flat
    from losslab.train import TrainSettings, train_endpoint

    t = time.perf_counter()
    p = train_endpoint(SPEC, TrainSettings(optimizer="adam", lr=1e-3, batch_size=64, epochs=args.epochs), ds, ev,
                       seed=0).point
    print(f"trained an endpoint ({args.epochs} epochs) in {time.perf_counter() - t:.1f} s")
    return p.flat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="an endpoint checkpoint of the default model")
    ap.add_argument("--results", type=Path, default=None, help="a finished default run: its seed-0 endpoint")
    ap.add_argument("--epochs", type=int, default=25, help="training epochs when no weights are given")
    ap.add_argument("--samples", type=int, default=500, help="training subset the Hessian is taken on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--reps", type=int, default=10, help="repetitions of the single-product timing")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 2000, 1000, 512, seed=0)
    w = _weights(args, ds, ev)
    x, y = data.subset(ev.train_x, ev.train_y, args.samples, 0)
    fm = FlatModel(build_model(SPEC, ds.in_shape, ds.num_outputs))
    fm.load_into(w)
    D = fm.numel
    print(f"SimpleCNN on digits: {D} parameters, Hessian on {x.shape[0]} training samples, {args.threads} thread(s)")

    f = hessian.point_loss(fm, w, x, y, ds.task)
    hvp = hessian.hvp_fn(f, w)
    ref = Reference(fm.module, x, y)
    starts = hessian.random_starts(args.starts, D, seed=0)
    v1 = starts[0].float()
    res = {"n_params": D, "samples": int(x.shape[0]), "threads": args.threads, "starts": args.starts,
           "steps": args.steps, "probes": args.probes}

    # 1. one product
    err = (hvp(v1) - torch.cat([h.reshape(-1) for h in ref.hvp(_split(v1, ref.params))])).abs().max()
    ours1 = _time(lambda: hvp(v1), args.reps)
    oursB = _time(lambda: hvp(starts.float()), max(1, args.reps // 2)) / args.starts
    ref1 = _time(lambda: ref.hvp(_split(v1, ref.params)), args.reps)
    g = torch.func.grad(f)
    former = _time(lambda: torch.func.jvp(g, (w,), (v1,))[1], args.reps)
    res["hvp"] = {"ref_ms": ref1 * 1e3, "ours_ms": ours1 * 1e3, "ours_batched_ms_per_vector": oursB * 1e3,
                  "former_jvp_ms": former * 1e3, "ratio": ref1 / ours1, "ratio_batched": ref1 / oursB,
                  "ratio_former": former / ours1, "max_abs_diff": float(err)}
    print(f"HVP: reference {ref1 * 1e3:.2f} ms, ours {ours1 * 1e3:.2f} ms (ratio {ref1 / ours1:.2f}x), "
          f"ours batched x{args.starts} {oursB * 1e3:.2f} ms per vector (ratio {ref1 / oursB:.2f}x); "
          f"former jvp-of-grad {former * 1e3:.2f} ms ({former / ours1:.2f}x ours); max |difference| {float(err):.2e}")

    # 2. Lanczos, starts x steps
    t = time.perf_counter()
    L = hessian.Lanczos(hvp, starts, torch.float32)
    L.run(args.steps)
    ours_ritz = [L.ritz(b).values for b in range(args.starts)]
    ours_l = time.perf_counter() - t
    t = time.perf_counter()
    ref_ritz = [reference_lanczos(ref, starts[b], args.steps) for b in range(args.starts)]
    ref_l = time.perf_counter() - t
    top = min(10, args.steps)
    agree = max(float(((a[:top] - b[:top]).abs() / b[:top].abs()).max()) for a, b in zip(ours_ritz, ref_ritz))
    res["lanczos"] = {"ref_s": ref_l, "ours_s": ours_l, "ratio": ref_l / ours_l, "top10_max_rel_diff": agree,
                      "top_eigenvalue": float(ours_ritz[0][0])}
    print(f"Lanczos {args.starts} starts x {args.steps} steps: reference {ref_l:.2f} s, ours {ours_l:.2f} s "
          f"(ratio {ref_l / ours_l:.2f}x); top-{top} Ritz values agree to {agree:.1e} (relative)")

    # 3. trace
    t = time.perf_counter()
    tr = hessian.hutchinson(hvp, D, args.probes, seed=1)
    ours_t = time.perf_counter() - t
    t = time.perf_counter()
    ref_tr = reference_trace(ref, args.probes, seed=1)
    ref_t = time.perf_counter() - t
    res["trace"] = {"ref_s": ref_t, "ours_s": ours_t, "ratio": ref_t / ours_t, "ours": tr.trace, "ours_se": tr.se,
                    "ref": ref_tr}
    print(f"Hutchinson trace, {args.probes} probes: reference {ref_t:.2f} s, ours {ours_t:.2f} s "
          f"(ratio {ref_t / ours_t:.2f}x); {tr.trace:.1f} +- {tr.se:.1f} (reference {ref_tr:.1f}, same probes)")

    # 4. PyHessian itself, when installed
    try:
        from pyhessian import hessian as pyh
    except ImportError:
        print("PyHessian not installed: skipped (pip install pyhessian)")
    else:
        module = build_model(SPEC, ds.in_shape, ds.num_outputs)
        FlatModel(module).load_into(w)
        H = pyh(module, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        t = time.perf_counter()
        H.trace(maxIter=args.probes, tol=0.0)
        py_t = time.perf_counter() - t
        res["pyhessian"] = {"trace_s": py_t, "trace_ratio": py_t / ours_t}
        print(f"PyHessian trace ({args.probes} probes): {py_t:.2f} s (ratio to ours {py_t / ours_t:.2f}x)")
        t = time.perf_counter()
        try:
            H.density(iter=args.steps, n_v=args.starts)
        except RuntimeError as exc:  # PyHessian 0.1 calls torch.eig, removed from torch
            print(f"PyHessian density fails on torch {torch.__version__}: {str(exc).splitlines()[0][:80]}")
        else:
            py_l = time.perf_counter() - t
            res["pyhessian"].update(density_s=py_l, density_ratio=py_l / ours_l)
            print(f"PyHessian density ({args.starts} x {args.steps}): {py_l:.2f} s (ratio to ours {py_l / ours_l:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
