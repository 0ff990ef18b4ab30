"""Curves in weight space: phi(t) as a combination of control points (flat vectors).

A curve with k bends has k + 2 control points ``control[0] = w1``, ``control[-1] = w2``.
``phi(t) = sum_i coeffs(t)[i] * control[i]`` for

* ``bezier``: Bernstein polynomials of degree k + 1 (k = 1 is the quadratic Bezier curve
  ``(1-t)^2 w1 + 2t(1-t) theta + t^2 w2``);
* ``chain``: a polygonal chain through the control points at t = i / (k + 1).

Checkpoint contract (shared by the curves and planes stages): a curve checkpoint is a
weights-only ``torch.save`` of ``{"format": "losslab.curve/1", "kind": str, "control":
Tensor[k + 2, D], "meta": dict}`` written with :func:`losslab.io.save_tensors`; the curves
stage writes ``curve.pt`` and one ``epochs/epoch{E:04d}.pt`` per epoch (E = 0 is the start).
``meta`` records kind, bends, seeds, status, the training settings and ``bn_policy``.

Beyond the formulas: :func:`train_curve` (E_{t~U[0,1]} Loss(phi(t)) with one t per minibatch, any
registered architecture through ``FlatModel.forward``, resumable), :func:`evaluate_paths` (loss,
NLL, accuracy along t for the curve and the line, BN recomputed per point, ensembles with w1),
:func:`summarise` (barriers, arc-length-weighted means) and :func:`predictions` (1-D regression).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .ensembles import ensemble_metrics
from .flat import FlatModel, loss_fn, metrics_from_outputs
from .io import ArtifactError, Point, check_compatible, load_point, load_tensors, save_tensors
from .seeds import derive_seed
from .training import EpochStats, Job, epoch_schedule, fingerprint, fit, l2_penalty, make_optimizer, steps_per_epoch

KINDS = ("bezier", "chain")


def bezier_coeffs(t: torch.Tensor, n_control: int) -> torch.Tensor:
    """Bernstein coefficients, shape ``t.shape + (n_control,)``."""
    t = torch.as_tensor(t, dtype=torch.float64 if not torch.is_tensor(t) else t.dtype)
    n = n_control - 1
    i = torch.arange(n_control, dtype=t.dtype, device=t.device)
    binom = torch.tensor([math.comb(n, k) for k in range(n_control)], dtype=t.dtype, device=t.device)
    tt = t.unsqueeze(-1)
    return binom * tt.pow(i) * (1 - tt).pow(n - i)


def chain_coeffs(t: torch.Tensor, n_control: int) -> torch.Tensor:
    """Piecewise-linear (hat function) coefficients, shape ``t.shape + (n_control,)``."""
    t = torch.as_tensor(t, dtype=torch.float64 if not torch.is_tensor(t) else t.dtype)
    # Hat functions on the integer grid s = t * (n - 1): exact 1/0 at the nodes (t = 0 and t = 1
    # give exactly w1 and w2 for any number of bends; no rounding of 1/3-spaced float nodes).
    nodes = torch.arange(n_control, dtype=t.dtype, device=t.device)
    s = t.unsqueeze(-1) * (n_control - 1)
    return (1 - (s - nodes).abs()).clamp_min(0)


def coeffs(kind: str, t, n_control: int) -> torch.Tensor:
    if n_control < 3:
        raise ValueError(f"a curve needs at least 1 bend (3 control points), got {n_control} control points")
    if kind == "bezier":
        return bezier_coeffs(t, n_control)
    if kind == "chain":
        return chain_coeffs(t, n_control)
    raise ValueError(f"unknown curve kind {kind!r}; known: {', '.join(KINDS)}")


def point(kind: str, control: torch.Tensor, t) -> torch.Tensor:
    """phi(t) for a scalar t (returns [D]) or a 1-D tensor of t (returns [T, D])."""
    c = coeffs(kind, torch.as_tensor(t, dtype=control.dtype, device=control.device), control.shape[0])
    return c @ control


def derivative_coeffs(kind: str, t, n_control: int) -> torch.Tensor:
    """d coeffs / dt through autograd (used for tests and speed |phi'(t)|)."""
    t = torch.as_tensor(t, dtype=torch.float64).detach().clone().requires_grad_(True)
    c = coeffs(kind, t, n_control)
    return torch.stack([torch.autograd.grad(c[i], t, retain_graph=True)[0] for i in range(n_control)])


# =====================================================================================
# Training: minimise E_{t ~ U[0,1]} Loss(phi(t)) over the bends, endpoints fixed.
# =====================================================================================

FORMAT = "losslab.curve/1"
CURVE_KEYS = ("init", "epochs", "optimizer", "lr", "momentum", "schedule", "batch_size", "l2")


@dataclass
class CurveSettings:
    init: str = "linear"  # linear | random
    epochs: int = 30
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    schedule: str = "constant"  # constant | cosine | step
    batch_size: int = 64
    l2: float = 0.0  # 0.5 * l2 * ||phi(t)||^2 is added to the loss

    @classmethod
    def from_dict(cls, d: dict) -> "CurveSettings":
        return cls(**{k: d[k] for k in CURVE_KEYS if k in d})


@dataclass
class CurveResult:
    control: torch.Tensor  # [k + 2, D]
    snapshots: list  # control points after each epoch, E = 0 .. epochs
    history: pd.DataFrame
    status: str  # ok | diverged
    meta: dict = field(default_factory=dict)
    resumed_from: int = 0


def check_bends(bends: int) -> None:
    if int(bends) < 1:
        raise ValueError(f"curves.bends = {bends}: a curve needs at least one bend (k >= 1)")


def load_endpoints(path_a, path_b, map_location="cpu") -> tuple[Point, Point]:
    """Load two endpoint checkpoints and check that one architecture made them.

    Raises :class:`losslab.io.ArtifactError` naming the file for a missing checkpoint and naming
    both architectures for incompatible ones; nothing has been trained at that point."""
    for p in (path_a, path_b):
        if not Path(p).exists():
            raise ArtifactError(f"endpoint checkpoint {p} does not exist; train the endpoint first")
    a, b = load_point(path_a, map_location), load_point(path_b, map_location)
    check_compatible({str(path_a): a, str(path_b): b})
    return a, b


def init_control(kind: str, w1: torch.Tensor, w2: torch.Tensor, bends: int, init: str = "linear",
                 fresh=None) -> torch.Tensor:
    """Control points ``[k + 2, D]`` with ``control[0] = w1`` and ``control[-1] = w2`` exactly.

    ``linear``: bends evenly spaced on the segment (the initial curve is the straight line for
    both families); ``random``: each bend is a fresh random initialisation of the network
    (``fresh(i)`` returns one flat vector), as in the reference implementation."""
    check_bends(bends)
    if kind not in KINDS:
        raise ValueError(f"unknown curve kind {kind!r}; known: {', '.join(KINDS)}")
    if init == "linear":
        s = torch.arange(1, bends + 1, dtype=w1.dtype, device=w1.device) / (bends + 1)
        mid = (1 - s)[:, None] * w1 + s[:, None] * w2
    elif init == "random":
        if fresh is None:
            raise ValueError("init 'random' needs a function returning fresh initialisations")
        mid = torch.stack([fresh(i).to(w1) for i in range(bends)])
    else:
        raise ValueError(f"curves.init = {init!r} is not allowed; allowed values: linear, random")
    return torch.cat([w1[None], mid, w2[None]]).detach().clone()


def line_points(w1: torch.Tensor, w2: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Points of the straight segment, exact at t = 0 and t = 1."""
    ts = ts.to(w1)
    pts = (1 - ts)[:, None] * w1 + ts[:, None] * w2
    pts[ts == 0] = w1
    pts[ts == 1] = w2
    return pts


@torch.no_grad()
def mean_path_loss(fm: FlatModel, kind: str, control: torch.Tensor, ev, task: str, ts=None, split="train",
                   batch_size: int = 4096) -> float:
    """Mean data loss over a fixed grid of t (BN recomputed at each point for BN models)."""
    ts = torch.linspace(0, 1, 7)[1:-1] if ts is None else torch.as_tensor(ts)
    x, y = ev.split(split)
    vals = []
    for t in ts:
        vec = point(kind, control, float(t))
        bufs = fm.recompute_bn(vec, ev.bn_x) if fm.has_bn else None
        vals.append(metrics_from_outputs(fm.outputs(vec, x, bufs, batch_size), y, task)["loss"])
    return float(np.mean(vals))


def train_curve(
    model_spec: dict,
    settings: CurveSettings,
    ds,
    ev,
    w1: Point,
    w2: Point,
    kind: str = "bezier",
    bends: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    state_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    stop_after: int | None = None,
) -> CurveResult:
    """Fit the bends of a curve between two fixed endpoints of the network that ``model_spec``
    builds: :func:`fit_curve` on that network, with random bends (``init: random``) drawn as fresh
    initialisations of the spec (``derive_seed(seed, "bend", i)``)."""
    from .models import build_model

    check_bends(bends)
    if kind not in KINDS:
        raise ValueError(f"unknown curve kind {kind!r}; known: {', '.join(KINDS)}")
    check_compatible({"w1": w1, "w2": w2})
    device = torch.device(device)
    fm = FlatModel(build_model(model_spec, ds.in_shape, ds.num_outputs).to(device))
    if fm.numel != w1.flat.numel():
        raise ArtifactError(
            f"the endpoints have {w1.flat.numel()} parameters but model {model_spec.get('name')!r} "
            f"with this spec has {fm.numel}; the curve must use the endpoints' architecture"
        )

    def fresh(i):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "bend", i))
            return FlatModel(build_model(model_spec, ds.in_shape, ds.num_outputs)).flatten()

    return fit_curve(fm, settings, ds, ev, w1, w2, kind, bends, seed, device, fresh, state_path, checkpoint_every,
                     stop_after, identity={"spec": model_spec})


def reinitialised(fm: FlatModel, seed: int) -> torch.Tensor:
    """A fresh initialisation of ``fm``'s network as a flat vector: every submodule's own
    ``reset_parameters`` on a copy, under ``torch.manual_seed(seed)`` (the global RNG is left as it was)."""
    import copy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        module = copy.deepcopy(fm.module).cpu()
        for m in module.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
        return fm.flatten(module)


def fit_curve(
    fm: FlatModel,
    settings: CurveSettings,
    ds,
    ev,
    w1: Point,
    w2: Point,
    kind: str = "bezier",
    bends: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    fresh=None,
    state_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    stop_after: int | None = None,
    identity: dict | None = None,
) -> CurveResult:
    """Fit the bends of a curve between two fixed endpoints of the network ``fm``; returns the
    control points, one snapshot per epoch (E = 0 .. epochs), the history and the status.

    A use of the training scaffold (:func:`losslab.training.fit`). Every minibatch samples one
    ``t ~ U[0, 1]``, forms the flat vector ``phi(t)`` from the control points and evaluates the
    network there with ``FlatModel.forward`` (train mode, so BatchNorm uses batch statistics at
    the sampled point). The loss is the data loss plus ``0.5 * l2 * ||phi(t)||^2`` (the L2
    convention of :mod:`losslab.training` for trained tensors that are not the weights).
    ``state_path`` holds resumable state (bends, optimiser, RNG, history and per-epoch
    snapshots) saved every ``checkpoint_every`` epochs; random bends are ``fresh(i)`` (default:
    :func:`reinitialised` with ``derive_seed(seed, "bend", i)``), minibatches and ``t`` are drawn
    with ``derive_seed(seed, "curve")``. ``identity`` joins the fingerprint that a resumed state
    must match."""
    check_bends(bends)
    if kind not in KINDS:
        raise ValueError(f"unknown curve kind {kind!r}; known: {', '.join(KINDS)}")
    check_compatible({"w1": w1, "w2": w2})
    device = torch.device(device)
    module = fm.module
    if fm.numel != w1.flat.numel():
        raise ArtifactError(f"the endpoints have {w1.flat.numel()} parameters, the network has {fm.numel}; "
                            "the curve must use the endpoints' architecture")
    if fresh is None:
        def fresh(i):
            return reinitialised(fm, derive_seed(seed, "bend", i))
    a, b = w1.flat.to(device), w2.flat.to(device)

    control0 = init_control(kind, a, b, bends, settings.init, fresh)
    theta = torch.nn.Parameter(control0[1:-1].clone())
    opt = make_optimizer([theta], settings.optimizer, settings.lr, settings.momentum, settings.l2, l2_in_loss=True,
                         key="curves.optimizer")
    ds = ds.to(device)
    n = ds.train_x.shape[0]
    lr_at = epoch_schedule(settings.schedule, settings.lr, settings.epochs, steps_per_epoch(n, settings.batch_size),
                           key="curves.schedule")
    lossf = loss_fn(ds.task)
    gen = torch.Generator()
    snapshots: list[torch.Tensor] = []

    def control() -> torch.Tensor:
        return torch.cat([a[None], theta.detach(), b[None]])

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        module.train()
        t = torch.rand((), generator=gen).to(device=device, dtype=a.dtype)
        c = coeffs(kind, t, bends + 2)
        phi = c[0] * a + c[1:-1] @ theta + c[-1] * b
        loss = lossf(fm.forward(phi, ds.train_x[idx]), ds.train_y[idx])
        return {"objective": loss + l2_penalty(phi, settings.l2) if settings.l2 else loss, "loss": loss}

    def record(epoch: int, stats: EpochStats, ok: bool) -> list[dict]:
        snapshots.append(control().clone())
        return [{"epoch": epoch, "running_objective": stats.mean("objective"), "running_loss": stats.mean("loss"),
                 "mean_train_loss": mean_path_loss(fm, kind, snapshots[-1], ev, ds.task) if ok else math.nan,
                 "lr": stats.lr_last}]

    def state() -> dict:
        return {"theta": theta.detach(), "snapshots": torch.stack([s[1:-1] for s in snapshots])}

    def load_state(st: dict) -> None:
        with torch.no_grad():
            theta.copy_(st["theta"])
        snapshots[:] = [torch.cat([a[None], s.to(device), b[None]]) for s in st["snapshots"].unbind(0)]

    key = fingerprint({**(identity or {}), "settings": asdict(settings), "kind": kind, "bends": bends, "seed": seed,
                       "dataset": ds.name, "n": n, "w1": float(a.double().sum()), "w2": float(b.double().sum())})
    job = Job(opt, lr_at, step, record, [theta], settings.epochs, gen, n, settings.batch_size, state, load_state,
              name="curve training")
    run = fit(job, key, derive_seed(seed, "curve"), state_path=state_path, checkpoint_every=checkpoint_every,
              stop_after=stop_after)
    hist = run.history
    if run.status == "diverged":  # one snapshot per epoch all the same: repeat the last one
        last = hist.iloc[-1].to_dict()
        pad = range(int(last["epoch"]) + 1, settings.epochs + 1)
        snapshots.extend(snapshots[-1].clone() for _ in pad)
        hist = pd.concat([hist, pd.DataFrame([{**last, "epoch": e} for e in pad], columns=hist.columns)],
                         ignore_index=True)
    meta = {
        "kind": kind, "bends": int(bends), "status": run.status, "seed": int(seed), "dataset": ds.name,
        "model_spec": w1.meta.get("model_spec"), "layout": w1.meta.get("layout"),
        "settings": asdict(settings), "t_sampling": "one t ~ U[0,1] per minibatch",
        "l2": "0.5 * l2 * ||phi(t)||^2 added to the loss",
        "bn_policy": ("train: batch statistics at the sampled phi(t); evaluation: " + fm.bn_policy(ev.bn_x.shape[0]))
        if fm.has_bn else fm.bn_policy(0),
        "has_bn": fm.has_bn,
    }
    return CurveResult(control().cpu(), [s.cpu() for s in snapshots], hist, run.status, meta, run.resumed_from)


def curve_checkpoint(kind: str, control: torch.Tensor, meta: dict) -> dict:
    return {"format": FORMAT, "kind": kind, "control": control.detach().cpu().contiguous(), "meta": dict(meta)}


def save_curve(kind: str, control: torch.Tensor, meta: dict, path) -> None:
    save_tensors(curve_checkpoint(kind, control, meta), path)


def load_curve(path, map_location="cpu") -> dict:
    """A curve checkpoint: ``{"format", "kind", "control" [k + 2, D], "meta"}`` (checked)."""
    obj = load_tensors(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ArtifactError(f"checkpoint {path} is not a losslab curve ({FORMAT})")
    control = obj["control"]
    if control.ndim != 2 or control.shape[0] < 3:
        raise ArtifactError(f"curve {path}: control points have shape {tuple(control.shape)}; "
                            "expected [k + 2, D] with k >= 1")
    return obj


EPOCHS_FORMAT = "losslab.curve-epochs/1"


def save_curve_epochs(kind: str, snapshots: list, meta: dict, path) -> None:
    """The curve after every epoch in one file: the endpoints once and the bends of each epoch
    (``bends`` [E + 1, k, D], E = 0 is the initial curve)."""
    first = snapshots[0]
    save_tensors({"format": EPOCHS_FORMAT, "kind": kind, "w1": first[0].detach().cpu(),
                  "w2": first[-1].detach().cpu(),
                  "bends": torch.stack([s[1:-1].detach().cpu() for s in snapshots]).contiguous(),
                  "meta": dict(meta)}, path)


def load_curve_epochs(path, map_location="cpu") -> dict:
    """``{"kind", "meta", "controls"}`` with ``controls`` [E + 1, k + 2, D] of a per-epoch file."""
    obj = load_tensors(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != EPOCHS_FORMAT:
        raise ArtifactError(f"file {path} is not a losslab per-epoch curve file ({EPOCHS_FORMAT})")
    b = obj["bends"]
    ends = [obj[k][None, None].expand(b.shape[0], 1, b.shape[-1]) for k in ("w1", "w2")]
    return {"kind": obj["kind"], "meta": obj["meta"], "controls": torch.cat([ends[0], b, ends[1]], 1)}


# =====================================================================================
# Evaluation along t: curve and straight line, BN recomputed per point, ensembles.
# =====================================================================================
@torch.no_grad()
def evaluate_paths(fm: FlatModel, paths: dict[str, torch.Tensor], ts: torch.Tensor, ev, task: str, l2: float = 0.0,
                   w1: torch.Tensor | None = None, w2: torch.Tensor | None = None, batch_size: int = 4096,
                   splits=("train", "test")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate each path (name -> points ``[T, D]`` at ``ts``) on the fixed subsets of ``ev``.

    Returns ``(along, ensemble)``. ``along`` has one row per (path, t, split) with ``loss`` (the
    data loss: cross-entropy, or MSE for regression), ``objective`` (= loss + 0.5 * l2 * ||phi(t)||^2),
    ``accuracy``, ``error``, the cumulative arc length ``arc_length`` and the BN policy.
    ``ensemble`` holds the ensemble of ``w1`` with ``phi(t)`` (mean of softmax probabilities; mean
    prediction for regression) against the reference ensemble of ``w1`` and ``w2``."""
    policy = fm.bn_policy(ev.bn_x.shape[0])

    def outputs(vec):
        bufs = fm.recompute_bn(vec, ev.bn_x) if fm.has_bn else None
        return {s: fm.outputs(vec, ev.split(s)[0], bufs, batch_size) for s in splits}

    first = next(iter(paths.values()))
    w1 = first[0] if w1 is None else w1
    w2 = first[-1] if w2 is None else w2
    out1, out2 = outputs(w1), outputs(w2)
    ref = {s: ensemble_metrics([out1[s], out2[s]], ev.split(s)[1], task) for s in splits}
    along, ens = [], []
    ts_list = [float(t) for t in ts]
    for name, pts in paths.items():
        seg = torch.cat([torch.zeros(1, dtype=torch.float64),
                         (pts[1:].double() - pts[:-1].double()).norm(dim=-1).cpu()]).cumsum(0)
        for i, t in enumerate(ts_list):
            vec = pts[i]
            out = outputs(vec)
            sq = float(vec.double().pow(2).sum())
            for s in splits:
                y = ev.split(s)[1]
                m = metrics_from_outputs(out[s], y, task)
                along.append({"path": name, "t": t, "split": s, "loss": m["loss"],
                              "objective": m["loss"] + 0.5 * l2 * sq, "accuracy": m["accuracy"],
                              "error": 1.0 - m["accuracy"], "weight_norm": math.sqrt(sq),
                              "arc_length": float(seg[i]), "bn_policy": policy})
                e = ensemble_metrics([out1[s], out[s]], y, task)
                ens.append({"path": name, "t": t, "split": s, "ensemble_loss": e["loss"],
                            "ensemble_accuracy": e["accuracy"], "single_loss": m["loss"],
                            "single_accuracy": m["accuracy"], "reference_loss": ref[s]["loss"],
                            "reference_accuracy": ref[s]["accuracy"],
                            "reference": "ensemble of endpoints w1 and w2", "bn_policy": policy})
    return pd.DataFrame(along), pd.DataFrame(ens)


def evaluate_curve(fm: FlatModel, kind: str, control: torch.Tensor, ev, task: str, points: int, l2: float = 0.0,
                   batch_size: int = 4096, w1: torch.Tensor | None = None,
                   w2: torch.Tensor | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A curve (``kind``, ``control`` [k + 2, D]) and the straight line between its ends at
    ``points`` evenly spaced t: the tables ``(along, ensemble, summary)`` of the curves stage
    (:func:`evaluate_paths` with paths ``curve`` and ``line``, then :func:`summarise` of the
    objective, loss and, for classification, error). ``w1``/``w2``, when given, must be the
    curve's ends exactly (an ArtifactError otherwise)."""
    if (w1 is not None and not torch.equal(control[0].cpu(), w1.cpu())) or \
            (w2 is not None and not torch.equal(control[-1].cpu(), w2.cpu())):
        raise ArtifactError("the curve does not end at the given endpoints")
    device = next(iter(fm.module.parameters())).device
    ts = torch.linspace(0, 1, int(points), dtype=control.dtype)
    control = control.to(device)
    paths = {"curve": point(kind, control, ts.to(device)),
             "line": line_points(control[0], control[-1], ts.to(device))}
    along, ens = evaluate_paths(fm, paths, ts, ev, task, l2, batch_size=batch_size)
    metrics = ("objective", "loss", "error") if task == "classification" else ("objective", "loss")
    return along, ens, summarise(along, metrics)


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2) if len(x) > 1 else float(y[0])


def summarise(along: pd.DataFrame, metrics=("objective", "loss", "error")) -> pd.DataFrame:
    """Per (path, split, metric): barrier = max along t minus the mean of the two endpoint
    values, the t-uniform mean and the arc-length-weighted mean (trapezoid rules)."""
    rows = []
    for (path, split), g in along.groupby(["path", "split"], sort=True):
        g = g.sort_values("t")
        t = g["t"].to_numpy(float)
        s = g["arc_length"].to_numpy(float)
        for metric in metrics:
            v = g[metric].to_numpy(float)
            ends = 0.5 * (v[0] + v[-1])
            finite = np.isfinite(v).all()
            vmax = float(np.max(v)) if finite else math.nan
            arc = _trapz(v, s) / s[-1] if finite and s[-1] > 0 else (float(np.mean(v)) if finite else math.nan)
            rows.append({"path": path, "split": split, "metric": metric, "barrier": vmax - ends,
                         "max": vmax, "t_at_max": float(t[np.argmax(v)]) if finite else math.nan,
                         "endpoint_mean": ends, "t_mean": _trapz(v, t) / (t[-1] - t[0]),
                         "arc_length_mean": arc, "length": float(s[-1])})
    return pd.DataFrame(rows)


@torch.no_grad()
def predictions(fm: FlatModel, kind: str, control: torch.Tensor, ts, x: torch.Tensor, bn_x=None) -> pd.DataFrame:
    """Predictive functions f(x; phi(t)) of a 1-output regression network on a grid ``x``."""
    rows = []
    for t in ts:
        vec = point(kind, control, float(t))
        bufs = fm.recompute_bn(vec, bn_x) if fm.has_bn and bn_x is not None else None
        f = fm.outputs(vec, x, bufs).reshape(-1).cpu().numpy()
        rows.append(pd.DataFrame({"t": float(t), "x": x.reshape(-1).cpu().numpy(), "f": f}))
    return pd.concat(rows, ignore_index=True)
