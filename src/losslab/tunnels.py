"""Radial tunnel width around an optimum (Fort & Jastrzebski, section 4.4, Figure 5).

From a trained point ``w`` draw K random unit directions ``d_k`` and look at the train loss along
each ray ``w + r d_k`` for ``r`` in ``[0, r_max]``. The *width* of the tunnel along a ray is the
distance ``r`` at which the loss first exceeds a threshold (absolute, or a multiple of the loss at
``w``). It is found for all rays at once:

1. a coarse profile: the loss at ``profile_points`` evenly spaced radii on every ray, in one
   batch of ``K * profile_points`` weight vectors (also stored for plotting);
2. the first profile radius above the threshold brackets the crossing on each ray;
3. batched bisection: every step evaluates the midpoints of all K brackets in one batch.

Rays whose loss stays below the threshold up to ``r_max`` are *censored*: their width is reported
as ``r_max`` with ``reached = False``.

Directions are plain Gaussian vectors scaled to unit length, or *filter normalised*
(:func:`losslab.flat.filter_normalise`, Li et al., 2018: each filter of the Gaussian direction gets
the norm of the matching filter of ``w``, biases and BatchNorm parameters zero) and then scaled to
unit length again, so that ``r`` is always a Euclidean distance in weight space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from .data import EvalData
from .engine import EngineOptions, Evaluator
from .flat import FlatModel, filter_normalise

NORMALIZATIONS = ("gaussian", "filter")
THRESHOLD_MODES = ("absolute", "relative")


def random_directions(fm: FlatModel, w: torch.Tensor, k: int, normalization: str = "gaussian",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` random unit directions ``[k, D]`` (on ``w``'s device and dtype)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown direction normalization {normalization!r}; allowed: {', '.join(NORMALIZATIONS)}")
    if k < 1:
        raise ValueError(f"need at least one direction, got {k}")
    d = torch.randn(k, fm.numel, generator=generator, dtype=torch.float64).to(w.device, w.dtype)
    if normalization == "filter":
        d = filter_normalise(d, w, fm)
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)


def batch_losses(fm: FlatModel, vecs: torch.Tensor, x: torch.Tensor, y: torch.Tensor, task: str,
                 buffers: dict | None = None, bn_x: torch.Tensor | None = None, chunk: int = 16) -> torch.Tensor:
    """Mean loss of the model at each row of ``vecs`` ``[N, D]`` on ``(x, y)``; returns ``[N]``.

    Evaluated by the engine (:class:`losslab.engine.Evaluator`): many weight vectors per forward
    where that is faster (at most ``chunk``), the per-point loop otherwise. BatchNorm models
    recompute the running statistics at every point on ``bn_x``; non-finite losses come back as
    ``inf``.
    """
    return model_loss_fn(fm, x, y, task, buffers, bn_x, chunk, n_points=vecs.shape[0])(vecs)


@dataclass
class TunnelResult:
    widths: torch.Tensor  # [K] distance of the first threshold crossing (r_max when censored)
    reached: torch.Tensor  # [K] bool: the loss exceeded the threshold within r_max
    threshold: float
    loss0: float
    radii: torch.Tensor  # [P] profile radii
    profile: torch.Tensor  # [K, P] loss along each ray at the profile radii


def tunnel_widths(loss_of, w: torch.Tensor, dirs: torch.Tensor, r_max: float, threshold: float,
                  mode: str = "absolute", profile_points: int = 11, steps: int = 20) -> TunnelResult:
    """Width of the low-loss tunnel along each direction, by batched bisection.

    ``loss_of(vecs [N, D]) -> [N]`` evaluates many points at once. ``mode='relative'`` makes the
    threshold ``threshold * loss(w)``. Bisection starts from the first coarse-profile radius whose
    loss exceeds the threshold, so the result is the *first* crossing up to the profile spacing.
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"unknown threshold mode {mode!r}; allowed: {', '.join(THRESHOLD_MODES)}")
    if profile_points < 2:
        raise ValueError(f"profile_points must be at least 2, got {profile_points}")
    if not r_max > 0:
        raise ValueError(f"r_max must be positive, got {r_max}")
    k = dirs.shape[0]
    loss0 = float(loss_of(w[None])[0])
    if not math.isfinite(loss0):
        raise ValueError(f"the loss at the optimum is not finite ({loss0}); the run has diverged")
    thr = threshold * loss0 if mode == "relative" else float(threshold)

    radii = torch.linspace(0.0, float(r_max), profile_points, dtype=w.dtype, device=w.device)
    pts = w[None, None] + radii[None, :, None] * dirs[:, None, :]  # [K, P, D]
    profile = loss_of(pts.reshape(-1, w.numel())).reshape(k, profile_points)
    profile[:, 0] = loss0
    above = profile > thr  # [K, P]
    reached = above.any(dim=1)
    first = torch.where(reached, above.float().argmax(dim=1), torch.full((k,), profile_points - 1, device=w.device))

    widths = torch.full((k,), float(r_max), dtype=w.dtype, device=w.device)
    at_zero = reached & (first == 0)
    widths[at_zero] = 0.0
    active = reached & (first > 0)
    if active.any():
        idx = active.nonzero().squeeze(1)
        lo = radii[first[idx] - 1].clone()
        hi = radii[first[idx]].clone()
        d = dirs[idx]
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            lm = loss_of(w[None] + mid[:, None] * d)
            up = lm > thr
            hi = torch.where(up, mid, hi)
            lo = torch.where(up, lo, mid)
        widths[idx] = hi
    return TunnelResult(widths, reached, thr, loss0, radii, profile)


def model_loss_fn(fm: FlatModel, x: torch.Tensor, y: torch.Tensor, task: str, buffers: dict | None = None,
                  bn_x: torch.Tensor | None = None, chunk: int = 16, n_points: int = 0):
    """``vecs [N, D] -> mean losses [N]`` for :func:`tunnel_widths` on fixed tensors: one engine
    for all calls (set up and calibrated once, for batches of about ``n_points`` vectors; at
    most ``chunk`` vectors per forward; no torch.compile, since batch sizes vary)."""
    if fm.has_bn and bn_x is None:
        raise ValueError("a BatchNorm model needs bn_x to recompute statistics at each point")
    ev = EvalData(x, y, x[:0], y[:0], bn_x if bn_x is not None else x[:0])
    eng = Evaluator(fm, ev, task, EngineOptions(point_chunk=chunk, compile="off"), x.device, buffers=buffers)
    eng.plan(n_points)

    def loss_of(vecs: torch.Tensor) -> torch.Tensor:
        res = eng.evaluate_vectors(vecs, ("train",))["train"]["loss"] / x.shape[0]
        res = res.to(torch.float32)
        return torch.where(torch.isfinite(res), res, torch.full_like(res, math.inf))

    return loss_of


def activation_floats(module: torch.nn.Module, in_shape) -> int:
    """Floats of every leaf module's output for one input sample (a rough activation size)."""
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + o.numel()))
             for m in module.modules() if not list(m.children())]
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            p = next(module.parameters())
            module(torch.zeros(1, *in_shape, device=p.device, dtype=p.dtype))
    finally:
        module.train(was)
        for h in hooks:
            h.remove()
    return total[0]


def chunk_for_budget(fm: FlatModel, in_shape, n_samples: int, budget_mb: int) -> int:
    """How many weight vectors one vmap pass may evaluate within ``budget_mb`` (an estimate:
    each point holds its parameters and the activations of ``n_samples`` inputs)."""
    per_point = 4 * (fm.numel + n_samples * activation_floats(fm.module, in_shape))
    return max(1, min(512, int(budget_mb * 2**20 // max(1, per_point))))


def probe_rows(res: TunnelResult, wnorm: float, **ids) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables of one optimum: widths per direction and the coarse loss-vs-r profile."""
    k = res.widths.shape[0]
    widths = pd.DataFrame({
        **{c: [v] * k for c, v in ids.items()},
        "direction": range(k),
        "width": res.widths.cpu().double().numpy(),
        "width_rel": (res.widths.cpu().double() / max(wnorm, 1e-12)).numpy(),
        "reached": res.reached.cpu().numpy(),
        "threshold": res.threshold,
        "loss0": res.loss0,
        "weight_norm": wnorm,
    })
    rr, kk = torch.meshgrid(res.radii.cpu().double(), torch.arange(k, dtype=torch.float64), indexing="xy")
    profile = pd.DataFrame({
        **{c: [v] * rr.numel() for c, v in ids.items()},
        "direction": kk.reshape(-1).long().numpy(),
        "r": rr.reshape(-1).double().numpy(),
        "loss": res.profile.cpu().double().reshape(-1).numpy(),
    })
    return widths, profile


def probe(fm: FlatModel, w: torch.Tensor, ev, task: str, *, directions: int, normalization: str, r_max: float,
          threshold: float, mode: str, profile_points: int, steps: int, direction_seed: int, buffers: dict | None = None,
          chunk: int = 16, **ids) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tunnel widths and profile of the optimum ``w`` on the fixed train subset of ``ev``."""
    gen = torch.Generator().manual_seed(int(direction_seed))
    dirs = random_directions(fm, w, directions, normalization, gen)
    loss_of = model_loss_fn(fm, ev.train_x, ev.train_y, task, buffers, ev.bn_x, chunk, directions * profile_points)
    res = tunnel_widths(loss_of, w, dirs, r_max, threshold, mode, profile_points, steps)
    return probe_rows(res, float(w.norm()), **ids)


PROFILE_COLUMNS = {"direction": int, "r": float, "loss": float, "status": str}


def probe_optimum(fm: FlatModel, w: torch.Tensor, ev, task: str, *, status: str = "ok", directions: int,
                  normalization: str, r_max: float, threshold: float, mode: str, profile_points: int, steps: int,
                  direction_seed: int, buffers: dict | None = None, chunk: int = 16,
                  **ids) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tunnel stage's tables of one optimum: :func:`probe` with the optimum's own test loss
    and accuracy and ``status`` columns. An optimum whose ``status`` is not ``ok``, whose weights
    or train loss are not finite, is not probed: one ``diverged`` row of NaN widths and an empty
    profile."""
    from .flat import evaluate_point

    if status == "ok" and not bool(w.isfinite().all()):
        status = "diverged"
    if status == "ok":
        m = evaluate_point(fm, w, ev, task)
        if not math.isfinite(m["train"]["loss"]):
            status = "diverged"
    if status != "ok":
        nan = math.nan
        widths = pd.DataFrame([{**ids, "direction": -1, "width": nan, "width_rel": nan, "reached": False,
                                "threshold": nan, "loss0": nan, "weight_norm": nan, "test_loss": nan,
                                "test_accuracy": nan, "status": "diverged"}])
        profile = pd.DataFrame({c: pd.Series(dtype=PROFILE_COLUMNS.get(c, object)) for c in [*ids, *PROFILE_COLUMNS]})
        return widths, profile
    widths, profile = probe(fm, w, ev, task, directions=directions, normalization=normalization, r_max=r_max,
                            threshold=threshold, mode=mode, profile_points=profile_points, steps=steps,
                            direction_seed=direction_seed, buffers=buffers, chunk=chunk, **ids)
    widths = widths.assign(test_loss=m["test"]["loss"], test_accuracy=m["test"]["accuracy"], status="ok")
    return widths, profile.assign(status="ok")


def summarise_widths(widths: pd.DataFrame) -> pd.DataFrame:
    """One row per swept value: width statistics over seeds and directions, and the status.

    ``status`` is ``diverged`` when every seed diverged, ``partial`` when some did, else ``ok``.
    ``censored_fraction`` is the share of rays that stayed below the threshold up to r_max
    (their width is a lower bound).
    """
    rows = []
    for (param, value, setting), g in widths.groupby(["param", "value", "setting"], sort=False):
        seeds = g.groupby("seed")["status"].first()
        n_div = int((seeds == "diverged").sum())
        ok = g[g["status"] == "ok"]
        n = len(ok)
        rows.append({
            "param": param, "value": value, "setting": setting,
            "n_seeds": int(len(seeds)), "n_diverged": n_div,
            "status": "diverged" if n_div == len(seeds) else ("partial" if n_div else "ok"),
            "n_rays": n,
            "width_mean": ok["width"].mean() if n else math.nan,
            "width_std": ok["width"].std(ddof=1) if n > 1 else (0.0 if n else math.nan),
            "width_sem": ok["width"].std(ddof=1) / math.sqrt(n) if n > 1 else math.nan,
            "width_rel_mean": ok["width_rel"].mean() if n else math.nan,
            "width_rel_std": ok["width_rel"].std(ddof=1) if n > 1 else math.nan,
            "censored_fraction": float((~ok["reached"].astype(bool)).mean()) if n else math.nan,
            "loss0_mean": ok.groupby("seed")["loss0"].first().mean() if n else math.nan,
            "test_accuracy_mean": ok.groupby("seed")["test_accuracy"].first().mean() if n else math.nan,
            "weight_norm_mean": ok.groupby("seed")["weight_norm"].first().mean() if n else math.nan,
            "threshold": ok["threshold"].iloc[0] if n else math.nan,
            **{c: g[c].dropna().iloc[0] if c in g and g[c].notna().any() else math.nan for c in ("n_train", "n_test")},
        })
    return pd.DataFrame(rows)
