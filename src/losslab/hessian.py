"""Hessian spectra on flat vectors: converged top eigenvalues, short-direction counts, the
Hutchinson trace and the stochastic Lanczos quadrature (SLQ) spectral density.

The Hessian is never formed: :func:`hvp_fn` builds the gradient's graph at the point once
(``torch.func.vjp`` of ``torch.func.grad``) and each product ``H v`` is one backward pass through
it; it takes one vector ``[D]`` or a batch ``[B, D]`` (several Lanczos starts, trace probes).

**Lanczos** (:class:`Lanczos`) runs ``B`` random starts in lockstep with full
re-orthogonalisation. After ``m`` steps the tridiagonal ``T_m = S diag(theta) S^T`` gives Ritz
values ``theta_i``; the residual of Ritz pair ``i`` is ``|beta_m * S[m-1, i]|`` (the norm of
``H y_i - theta_i y_i``), and some Hessian eigenvalue lies within that residual of ``theta_i``.
A Ritz value is *converged* when its residual is at most ``tol`` times the largest Ritz value's
magnitude. :func:`top_eigenvalues_converged` runs until the ``k`` largest Ritz values of every
start are converged (or ``max_steps``).

**Short directions** (:func:`short_directions`): the number of Hessian eigenvalues above
``threshold``, counted from converged Ritz values only. When every kept Ritz value is above the
threshold, converged or not, at least ``k`` eigenvalues are (Ritz values never exceed the
eigenvalues of their rank), so ``k`` is doubled at once and Lanczos continues, up to ``max_top_k``;
a count at the cap is reported ``saturated`` (a lower bound, decided without waiting for the values
to converge). A count resting on an unconverged value, or whose first value below the threshold is
not clear of it by its residual, is reported not ``converged`` (a lower bound too). Each start is
one replicate.

**Trace** (:func:`hutchinson`): ``tr H = E[z^T H z]`` over Rademacher probes ``z``, with its
standard error over the probes. **Density** (:func:`slq_density`): each start ``v`` gives the
Gauss quadrature ``v^T g(H) v = sum_i tau_i g(theta_i)`` with ``tau_i = S[0, i]^2``; averaged over
starts and broadened with Gaussians of width ``sigma`` it estimates the spectral density
``(1/n) sum_j delta(lambda - lambda_j)`` (so its mean is ``tr H / n``).

**BatchNorm convention** (:class:`PointLoss`): at each point the BatchNorm running statistics are
recomputed on the fixed un-augmented subset (``FlatModel.recompute_bn``) and then held fixed: the
network runs in eval mode, so the Hessian is that of a fixed function of the weights (batch
statistics would make every sample's loss depend on the others). Dropout is off.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.func import grad, vjp

from .device import progress_bar

log = logging.getLogger("losslab")

BN_POLICY = ("statistics recomputed at the point on the fixed un-augmented {n}-sample training subset "
             "(swa_utils.update_bn), then held fixed (eval mode)")


# ----- the loss at a point ------------------------------------------------------------------
class PointLoss:
    """``vec -> loss`` of a :class:`~losslab.flat.FlatModel` on fixed tensors, in eval mode with
    fixed BatchNorm buffers (see the module docstring). Build it with :func:`point_loss`."""

    def __init__(self, fm, x: torch.Tensor, y: torch.Tensor, task: str, buffers: dict | None = None,
                 bn_policy: str = "none (no BatchNorm layers)"):
        from .flat import loss_fn

        self.fm, self.x, self.y, self.task = fm, x, y, task
        self.buffers = buffers or None
        self.lossf = loss_fn(task)
        self.bn_policy = bn_policy

    def __call__(self, vec: torch.Tensor) -> torch.Tensor:
        module = self.fm.module
        modes = [(m, m.training) for m in module.modules()]
        module.eval()
        try:
            return self.lossf(self.fm.forward(vec, self.x, self.buffers), self.y)
        finally:
            for m, mode in modes:
                m.training = mode


def point_loss(fm, vec: torch.Tensor, x: torch.Tensor, y: torch.Tensor, task: str,
               bn_x: torch.Tensor | None = None) -> PointLoss:
    """The loss whose Hessian is taken at ``vec``: BatchNorm statistics recomputed at ``vec`` on
    ``bn_x`` and held fixed (required when the network has BatchNorm layers)."""
    if not fm.has_bn:
        return PointLoss(fm, x, y, task)
    if bn_x is None:
        raise ValueError("the network has BatchNorm layers: pass bn_x, the fixed subset its statistics are recomputed on")
    buffers = fm.recompute_bn(vec.detach(), bn_x)
    return PointLoss(fm, x, y, task, buffers, BN_POLICY.format(n=int(bn_x.shape[0])))


def hvp_fn(loss_fn, x: torch.Tensor):
    """``v -> H(x) v`` for ``loss_fn: vec -> scalar`` at ``x``; ``v`` is ``[D]`` or a batch ``[B, D]``.

    Reverse-over-reverse with the gradient's graph built once at ``x``: ``torch.func.vjp`` of
    ``grad(loss_fn)`` returns a pull-back that each product calls again (the Hessian is symmetric,
    so ``v^T H = (H v)^T``), which costs one backward pass of the gradient graph per vector. A
    batch runs row by row: on the CPU that measured faster than ``vmap`` over the pull-back, and
    about twice as fast as forward-over-reverse (``jvp`` of ``grad``, which redoes the forward
    and backward passes for every vector); see benchmarks/bench_hessian.py."""
    _, pull = vjp(grad(loss_fn), x.detach())

    def one(v: torch.Tensor) -> torch.Tensor:
        return pull(v)[0]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return one(v) if v.dim() == 1 else torch.stack([one(r) for r in v])

    return hvp


# ----- Lanczos ------------------------------------------------------------------------------
@dataclass
class Ritz:
    """Ritz values of one start, descending, with residuals and quadrature weights."""

    values: torch.Tensor     # theta, descending
    residuals: torch.Tensor  # |beta_m S[m-1, i]|
    weights: torch.Tensor    # tau_i = S[0, i]^2 (sum to 1)
    steps: int

    def converged(self, tol: float) -> torch.Tensor:
        """Residual at most ``tol`` times the value's own magnitude (``tol`` times the largest
        magnitude for values near zero, below ``tol`` of it)."""
        scale = float(self.values.abs().max()) if self.values.numel() else 0.0
        return self.residuals <= tol * self.values.abs().clamp_min(max(tol * scale, 1e-30))


class Lanczos:
    """Lanczos with full re-orthogonalisation on ``B`` unit starts in lockstep (float64
    recurrences; the operator is applied in ``dtype``). ``matvec`` takes ``[B, D]``."""

    def __init__(self, matvec, starts: torch.Tensor, dtype=torch.float32):
        self.matvec, self.dtype = matvec, dtype
        v = starts.to(torch.float64)
        self.v = v / v.norm(dim=-1, keepdim=True)
        self.B, self.D = self.v.shape
        self.V = torch.zeros(self.B, 8, self.D, dtype=torch.float64, device=v.device)
        self.alpha = torch.zeros(self.B, 0, dtype=torch.float64)
        self.beta = torch.zeros(self.B, 0, dtype=torch.float64)  # beta[:, j]: norm of the residual after step j
        self.m = torch.zeros(self.B, dtype=torch.long)           # Krylov dimension of each start
        self.active = torch.ones(self.B, dtype=torch.bool)       # False after an invariant subspace
        self.steps = 0

    def step(self) -> None:
        j = self.steps
        if j >= self.D or not bool(self.active.any()):
            return
        if j >= self.V.shape[1]:
            self.V = torch.cat([self.V, torch.zeros_like(self.V)], 1)
        self.V[:, j] = self.v
        w = self.matvec(self.v.to(self.dtype)).to(torch.float64)
        a = (w * self.v).sum(-1)
        Vj = self.V[:, : j + 1]
        for _ in range(2):  # full re-orthogonalisation, twice is enough in floating point
            w = w - torch.einsum("bj,bjd->bd", torch.einsum("bjd,bd->bj", Vj, w), Vj)
        b = w.norm(dim=-1)
        act = self.active.to(b.device)
        amax = torch.maximum(self.alpha.abs().amax(-1) if j else torch.zeros(self.B, dtype=torch.float64),
                             a.abs().cpu()).clamp_min(1.0)
        broke = (b.cpu() < 1e-10 * amax) & self.active
        self.alpha = torch.cat([self.alpha, torch.where(self.active, a.cpu(), 0.0)[:, None]], 1)
        self.beta = torch.cat([self.beta, torch.where(self.active & ~broke, b.cpu(), 0.0)[:, None]], 1)
        self.m += self.active.long()
        self.active &= ~broke
        safe = torch.where(act[:, None] & ~broke.to(b.device)[:, None], w / b.clamp_min(1e-300)[:, None], self.v)
        self.v = safe
        self.steps += 1

    def run(self, steps: int) -> None:
        for _ in range(max(0, int(steps))):
            self.step()

    def ritz(self, b: int = 0) -> Ritz:
        m = int(self.m[b])
        a, be = self.alpha[b, :m], self.beta[b, :m]
        T = torch.diag(a) + torch.diag(be[: m - 1], 1) + torch.diag(be[: m - 1], -1)
        theta, S = torch.linalg.eigh(T)
        theta, S = theta.flip(0), S.flip(1)
        return Ritz(theta, (be[m - 1] * S[m - 1]).abs(), S[0] ** 2, m)


def random_starts(n: int, dim: int, seed: int, device="cpu") -> torch.Tensor:
    """``n`` seeded Gaussian unit vectors (float64)."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return (v / v.norm(dim=-1, keepdim=True)).to(device)


def lanczos(matvec, dim: int, iters: int, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Ritz values (descending) of ``iters`` Lanczos steps from one seeded start."""
    m = min(int(iters), int(dim))
    if m < 1:
        raise ValueError(f"Lanczos needs at least one iteration, got iters={iters}")
    L = Lanczos(lambda v: matvec(v[0])[None], random_starts(1, dim, seed, device), dtype)
    L.run(m)
    return L.ritz(0).values


def top_eigenvalues(loss_fn, x: torch.Tensor, k: int, iters: int, seed: int = 0) -> torch.Tensor:
    """The ``k`` largest Ritz values of ``iters`` Lanczos steps (no convergence check)."""
    if iters < k:
        raise ValueError(f"Lanczos iters = {iters} must be at least top_k = {k}")
    vals = lanczos(hvp_fn(loss_fn, x), x.numel(), iters, seed, x.dtype, x.device)
    return vals[:k]


def count_short(eigenvalues: torch.Tensor, threshold: float) -> int:
    """Number of short directions: eigenvalues strictly above ``threshold``."""
    return int((eigenvalues > threshold).sum())


def top_eigenvalues_converged(matvec, dim: int, k: int, tol: float = 1e-6, max_steps: int = 300, starts: int = 1,
                              seed: int = 0, min_steps: int | None = None, check_every: int = 5,
                              dtype=torch.float32, device="cpu") -> list[Ritz]:
    """Lanczos from ``starts`` seeded starts until the ``k`` largest Ritz values of every start
    have residuals ``<= tol * |theta_1|`` (or ``max_steps``); one :class:`Ritz` per start."""
    L = Lanczos(matvec, random_starts(starts, dim, seed, device), dtype)
    L.run(max(k, min_steps or 0))
    while True:
        rs = [L.ritz(b) for b in range(starts)]
        if all(bool(r.converged(tol)[:k].all()) for r in rs) or L.steps >= min(max_steps, dim) \
                or not bool(L.active.any()):
            return rs
        L.run(min(check_every, max_steps - L.steps))


# ----- short directions ---------------------------------------------------------------------
@dataclass
class ShortCount:
    """Short directions from one Lanczos start."""

    start: int
    count: int              # converged Ritz values above the threshold (k when all k kept are above it)
    n_converged: int        # converged among the k kept
    converged: bool         # every kept value above the threshold converged, the first below it clear of it
    saturated: bool         # every kept value is above the threshold at the final k (a lower bound)
    k: int                  # Ritz values kept at the end (top_k, doubled while the count could reach it)
    ritz: Ritz = field(repr=False)

    @property
    def kept(self) -> Ritz:
        r = self.ritz
        return Ritz(r.values[: self.k], r.residuals[: self.k], r.weights[: self.k], r.steps)


def _decide(r: Ritz, k: int, threshold: float, tol: float) -> tuple[int, int, bool, bool]:
    """(count, n_converged, converged, full): full = every kept value is above the threshold.

    Ritz values are lower bounds of the eigenvalues of the same rank (Cauchy interlacing), so a
    value above the threshold is an eigenvalue above it; the count is decided when every kept
    value above the threshold is converged and the first one below it is converged with its
    residual clear of the threshold (``theta + residual <= threshold``: its eigenvalue is below).
    When all ``k`` kept values are above the threshold the count is at least ``k`` whether they
    have converged or not: it is returned as ``k``, decided, and full (the caller raises ``k``,
    or reports the count saturated at the cap)."""
    k = min(k, r.values.numel())
    vals, res, conv = r.values[:k], r.residuals[:k], r.converged(tol)[:k]
    above = vals > threshold
    n_above = int(above.sum())
    exact = r.steps >= 1 and float(r.residuals.max()) == 0.0  # invariant subspace: every Ritz value exact
    full = n_above == k and not exact
    if full:
        # k Ritz values above the threshold certify k eigenvalues above it, converged or not: the
        # count is at least k (decided as a lower bound, reported saturated at the cap)
        return k, int(conv.sum()), True, True
    decided = bool(conv[:n_above].all())
    if n_above < k:
        decided &= bool(conv[n_above]) and float(vals[n_above] + res[n_above]) <= threshold
    return int((above & conv).sum()), int(conv.sum()), decided, full


def short_directions(matvec, dim: int, threshold: float, top_k: int = 30, min_steps: int = 40, tol: float = 1e-3,
                     max_top_k: int = 120, max_steps: int = 400, starts: int = 3, seed: int = 0,
                     check_every: int = 5, dtype=torch.float32, device="cpu") -> list[ShortCount]:
    """Converged short-direction counts from ``starts`` Lanczos starts (see the module docstring).

    Lanczos runs ``min_steps`` steps, then ``check_every`` more at a time until, for every start,
    the count is decided by converged values: the kept Ritz values above ``threshold`` have
    residuals ``<= tol * |theta_1|``, and so has the first one below it, whose residual must also
    clear the threshold (see :func:`_decide`). As soon as every kept value of some start is above
    the threshold (converged or not: Ritz values bound the eigenvalues of their rank from below),
    ``k`` doubles (up to ``max_top_k``); at the cap such a start is decided, saturated.
    ``max_steps`` bounds the Krylov dimension."""
    k = min(top_k, dim)
    cap = min(max(max_top_k, top_k), dim)
    max_steps = min(max(max_steps, min_steps, k), dim)
    L = Lanczos(matvec, random_starts(starts, dim, seed, device), dtype)
    L.run(max(min_steps, k))
    while True:
        rs = [L.ritz(b) for b in range(starts)]
        dec = [_decide(r, k, threshold, tol) for r in rs]
        stuck = L.steps >= max_steps or not bool(L.active.any())
        if any(d[3] for d in dec) and k < cap and not stuck:
            k = min(2 * k, cap)  # the count could reach the cap: raise it
            L.run(max(0, k - L.steps))
            continue
        if all(d[2] for d in dec) or stuck:
            break
        L.run(min(check_every, max_steps - L.steps))
    out = []
    for b, (r, (count, n_conv, conv, full)) in enumerate(zip(rs, dec)):
        out.append(ShortCount(b, count, n_conv, conv, full, min(k, r.values.numel()), r))
    return out


# ----- trace and density --------------------------------------------------------------------
@dataclass
class Trace:
    trace: float
    se: float
    probes: int
    samples: np.ndarray = field(repr=False)


def hutchinson(matvec, dim: int, probes: int = 20, seed: int = 0, chunk: int = 8, dtype=torch.float32,
               device="cpu") -> Trace:
    """Hutchinson's trace estimate ``mean_z z^T H z`` over seeded Rademacher probes, with its
    standard error (sample standard deviation / sqrt(probes))."""
    g = torch.Generator().manual_seed(int(seed))
    q = []
    for lo in range(0, probes, chunk):
        n = min(chunk, probes - lo)
        z = (torch.randint(0, 2, (n, dim), generator=g) * 2 - 1).to(dtype).to(device)
        q.append((matvec(z) * z).sum(-1).to(torch.float64).cpu())
    s = torch.cat(q).numpy()
    se = float(s.std(ddof=1) / math.sqrt(len(s))) if len(s) > 1 else math.nan
    return Trace(float(s.mean()), se, len(s), s)


def slq_moments(ritz: list[Ritz], power: int) -> tuple[float, float]:
    """The SLQ estimate of ``(1/n) tr H^power`` (mean over starts) and its standard error."""
    vals = np.array([float((r.weights * r.values ** power).sum()) for r in ritz])
    se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else math.nan
    return float(vals.mean()), se


def density_grid(ritz_sets, points: int = 200, margin: float = 0.05) -> np.ndarray:
    """An eigenvalue grid spanning every Ritz value of several points (a common grid along a path)."""
    vals = np.concatenate([r.values.numpy() for rs in ritz_sets for r in rs])
    lo, hi = float(vals.min()), float(vals.max())
    pad = margin * max(hi - lo, 1e-12)
    return np.linspace(lo - pad, hi + pad, points)


def slq_density(ritz: list[Ritz], grid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-broadened SLQ density on ``grid`` (integrates to about 1 over a wide grid)."""
    out = np.zeros_like(grid, dtype=np.float64)
    for r in ritz:
        th, w = r.values.numpy()[:, None], r.weights.numpy()[:, None]
        out += (w * np.exp(-0.5 * ((grid[None] - th) / sigma) ** 2)).sum(0)
    return out / (len(ritz) * sigma * math.sqrt(2 * math.pi))


# ----- everything at one point, and tables --------------------------------------------------
@dataclass
class Spectrum:
    counts: list[ShortCount]
    trace: Trace
    dim: int
    seconds: float = 0.0

    @property
    def ritz(self) -> list[Ritz]:
        return [c.ritz for c in self.counts]


def spectrum(loss_fn, x: torch.Tensor, threshold: float, top_k: int, min_steps: int, tol: float, max_top_k: int,
             max_steps: int, starts: int, probes: int, seed: int = 0) -> Spectrum:
    """Converged short-direction counts and SLQ quadratures from ``starts`` Lanczos starts, and
    Hutchinson's trace from ``probes`` Rademacher probes, of the Hessian of ``loss_fn`` at ``x``."""
    import time

    from .seeds import derive_seed

    t0 = time.perf_counter()
    hvp = hvp_fn(loss_fn, x)
    counts = short_directions(hvp, x.numel(), threshold, top_k, min_steps, tol, max_top_k, max_steps, starts,
                              derive_seed(seed, "lanczos"), dtype=x.dtype, device=x.device)
    tr = hutchinson(hvp, x.numel(), probes, derive_seed(seed, "hutchinson"), dtype=x.dtype, device=x.device) \
        if probes > 0 else Trace(math.nan, math.nan, 0, np.zeros(0))
    return Spectrum(counts, tr, x.numel(), time.perf_counter() - t0)


def eigenvalue_rows(sp: Spectrum, threshold: float, tol: float) -> list[dict]:
    """One row per (start, rank) of the kept Ritz values; ``short`` marks the values the count
    counts (converged and above the threshold, or any of a saturated start's, all above it)."""
    rows = []
    for c in sp.counts:
        r = c.kept
        conv = r.converged(tol)
        for i in range(c.k):
            v = float(r.values[i])
            rows.append({"start": c.start, "rank": i, "eigenvalue": v, "residual": float(r.residuals[i]),
                         "eigenvalue_converged": bool(conv[i]),
                         "short": (bool(conv[i]) or c.saturated) and v > threshold})
    return rows


def count_rows(sp: Spectrum, threshold: float, tol: float) -> list[dict]:
    """One row per start: the count, its flags, the top eigenvalue, and the point's trace and SLQ moments."""
    m1, m1_se = slq_moments(sp.ritz, 1)
    m2, m2_se = slq_moments(sp.ritz, 2)
    rows = []
    for c in sp.counts:
        rows.append({"start": c.start, "short_count": c.count, "n_converged": c.n_converged,
                     "converged": c.converged, "saturated": c.saturated, "top_k": c.k, "lanczos_steps": c.ritz.steps,
                     "top_eigenvalue": float(c.ritz.values[0]), "top_residual": float(c.ritz.residuals[0]),
                     "threshold": threshold, "tol": tol, "trace": sp.trace.trace, "trace_se": sp.trace.se,
                     "probes": sp.trace.probes, "slq_mean": m1, "slq_mean_se": m1_se, "slq_second_moment": m2,
                     "slq_second_moment_se": m2_se, "n_params": sp.dim, "seconds": sp.seconds})
    return rows


def density_rows(sp: Spectrum, grid: np.ndarray, sigma: float) -> pd.DataFrame:
    return pd.DataFrame({"eigenvalue": grid, "density": slq_density(sp.ritz, grid, sigma), "sigma": sigma,
                         "starts": len(sp.counts)})


SPECTRUM_KEYS = ("threshold", "top_k", "min_steps", "tol", "max_top_k", "max_steps", "starts", "probes", "seed")


def spectra_tables(fm, vectors, labels: list[dict], x: torch.Tensor, y: torch.Tensor, task: str, cfg: dict,
                   bn_x: torch.Tensor | None = None, density_points: int = 200, sigma: float = 0.01,
                   log=None) -> dict[str, pd.DataFrame]:
    """Hessian spectra of the training loss on ``(x, y)`` at each vector, labelled by ``labels``
    (one dict of id columns per vector, for example ``{"path": "curve", "t": 0.5}``).

    ``cfg`` holds :data:`SPECTRUM_KEYS` (``min_steps`` may be spelled ``iters``). Equal vectors are
    computed once. Returns long tables ``counts`` (one row per point and Lanczos start),
    ``eigenvalues`` (per point, start and rank) and ``density`` (per point and grid value; one
    grid for all points, ``sigma`` a fraction of its span)."""
    c = dict(cfg)
    c.setdefault("min_steps", c.get("iters"))
    spectra, cache = [], {}
    for vec, lab in zip(vectors, labels):
        key = (vec.shape[0], float(vec.double().sum()), float(vec.double().norm()))
        if key not in cache:
            f = point_loss(fm, vec, x, y, task, bn_x)
            sp = spectrum(f, vec.detach(), c["threshold"], c["top_k"], c["min_steps"], c["tol"], c["max_top_k"],
                          c["max_steps"], c["starts"], c.get("probes", 0), c["seed"])
            cache[key] = (sp, f.bn_policy)
            if log:
                log.info("%s: short directions %s (converged %s, saturated %s), top eigenvalue %.4g, trace %.4g +- %.2g, "
                         "%d Lanczos steps, %.1f s", lab, [s.count for s in sp.counts], [s.converged for s in sp.counts],
                         [s.saturated for s in sp.counts], float(sp.counts[0].ritz.values[0]), sp.trace.trace,
                         sp.trace.se, sp.counts[0].ritz.steps, sp.seconds)
        spectra.append(cache[key])
    grid = density_grid([sp.ritz for sp, _ in spectra], density_points)
    span = float(grid[-1] - grid[0])
    counts, eig, dens = [], [], []
    for (sp, policy), lab in zip(spectra, labels):
        ids = {**lab, "bn_policy": policy, "samples": int(x.shape[0]), "n_train": int(x.shape[0]), "n_test": 0}
        counts += [{**ids, **r} for r in count_rows(sp, c["threshold"], c["tol"])]
        eig += [{**ids, **r, "threshold": c["threshold"]} for r in eigenvalue_rows(sp, c["threshold"], c["tol"])]
        dens.append(density_rows(sp, grid, sigma * span).assign(**ids))
    return {"counts": pd.DataFrame(counts), "eigenvalues": pd.DataFrame(eig),
            "density": pd.concat(dens, ignore_index=True)}


def short_direction_rows(fm, vectors: torch.Tensor, x: torch.Tensor, y: torch.Tensor, task: str, sd: dict,
                         bn_x: torch.Tensor | None = None, progress: bool = False) -> pd.DataFrame:
    """Converged short-direction counts at each vector (:func:`losslab.hessian.spectra_tables`, no
    trace probes), long format: one row per (``index``, Lanczos ``start``, ``rank``) with the kept
    eigenvalue, its residual, the ``short`` flag (converged and above the threshold) and the
    start's ``short_count``, ``n_converged``, ``converged``, ``saturated``, ``top_k`` (the final
    cap) and ``iters`` (the Lanczos steps taken); BatchNorm as in :class:`losslab.hessian.PointLoss`."""
    cfg = {**sd, "min_steps": sd["iters"], "probes": 0}
    labels = [{"index": i} for i in range(len(vectors))]
    t = spectra_tables(fm, list(progress_bar(vectors, progress, desc="Lanczos")), labels, x, y, task, cfg, bn_x,
                       density_points=2, log=log)
    keep = ["index", "start", "short_count", "n_converged", "converged", "saturated", "top_k", "lanczos_steps",
            "bn_policy"]
    rows = t["eigenvalues"].drop(columns=["bn_policy", "samples", "n_train", "n_test"]).merge(
        t["counts"][keep], on=["index", "start"])
    return rows.rename(columns={"lanczos_steps": "iters"})


# Called, this module is the API function of its name (losslab.api; docs/api.md).
from ._callable import make_callable  # noqa: E402

make_callable(__name__)
