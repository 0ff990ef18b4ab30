"""Connectors and m-connectors (Fort & Jastrzebski, sections 4.2-4.3) over any loss on flat vectors.

Everything here takes ``loss_fn``: a callable ``vec -> scalar`` on a 1-D tensor of ``D``
entries. The same code therefore runs on the wedge toy landscape (:mod:`losslab.wedge`) and on
networks (:func:`network_loss` wraps a :class:`losslab.flat.FlatModel`).

Connector between optima ``a`` and ``b``:

1. split the straight line into ``S`` segments (nodes ``t_k = k / S``);
2. at each interior node choose a ``d``-dimensional subspace orthogonal to the line;
3. minimise the loss inside the affine subspace through the node (start at the node);
4. join ``a``, the optimised nodes and ``b`` piecewise-linearly.

m-connector between ``n`` optima: the same with the nodes of a barycentric grid of the optima's
convex hull, and subspaces orthogonal to the hull's affine span.

Subspaces (``d`` directions orthogonal to ``k`` excluded ones):

* ``d = None``: the full orthogonal complement (``D - k`` directions; the gradient is projected);
* a dense random subspace: a seeded Gaussian ``D x d`` matrix with the excluded directions
  removed, orthonormalised by QR. Used when ``3 * D * d`` floats fit ``memory_budget_mb``;
* otherwise a block-wise random projection: the Gaussian columns are regenerated from the seed
  block by block inside the forward and backward pass (a custom autograd function), so only one
  block of ``D x b`` floats lives in memory. Its columns are scaled by ``1/sqrt(D)`` and are
  orthonormal only approximately (exactly orthogonal to the excluded directions).
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from .device import progress_bar

from .seeds import derive_seed
from .training import EpochStats, Job, epoch_schedule, fit, make_optimizer

log = logging.getLogger("losslab")


# ---- subspaces --------------------------------------------------------------------------
def _remove(U: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """Project the excluded directions (orthonormal rows of ``U``) out of ``x`` (``[D]`` or ``[D, m]``)."""
    if U is None or U.numel() == 0:
        return x
    if x.ndim == 1:
        return x - U.T @ (U @ x)
    return x - U.T @ (U @ x)


class FullSubspace:
    """The whole orthogonal complement of ``U`` (or the whole space): ``c`` has ``D`` entries."""

    kind = "full"

    def __init__(self, D: int, U: torch.Tensor | None = None):
        self.D = D
        self.U = U
        self.dim = D - (0 if U is None else U.shape[0])
        self.n_coords = D

    def map(self, c: torch.Tensor) -> torch.Tensor:
        return _remove(self.U, c)


class MatrixSubspace:
    """Span of the columns of an explicit ``D x d`` basis."""

    kind = "dense"

    def __init__(self, basis: torch.Tensor):
        self.basis = basis
        self.D, self.dim = basis.shape
        self.n_coords = self.dim

    def map(self, c: torch.Tensor) -> torch.Tensor:
        return self.basis @ c


class _BlockProject(torch.autograd.Function):
    """``out = G c`` with ``G`` regenerated block by block from a seed (never stored whole)."""

    @staticmethod
    def forward(ctx, c, sub):
        ctx.sub = sub
        out = torch.zeros(sub.D, dtype=c.dtype, device=c.device)
        for j, (lo, hi, G) in enumerate(sub.blocks(c.device, c.dtype)):
            out += G @ c[lo:hi]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        sub = ctx.sub
        parts = [G.T @ grad_out for (_, _, G) in sub.blocks(grad_out.device, grad_out.dtype)]
        return torch.cat(parts), None


class BlockRandomSubspace:
    """A random ``d``-dimensional subspace whose ``D x d`` matrix never lives in memory at once."""

    kind = "blockwise"

    def __init__(self, D: int, d: int, U: torch.Tensor | None, seed: int, block_cols: int):
        self.D, self.dim, self.U, self.seed = D, d, U, seed
        self.block_cols = max(1, int(block_cols))
        self.n_coords = d

    def blocks(self, device, dtype):
        for j, lo in enumerate(range(0, self.dim, self.block_cols)):
            hi = min(self.dim, lo + self.block_cols)
            g = torch.Generator(device=device).manual_seed(derive_seed(self.seed, "block", j))
            G = torch.randn(self.D, hi - lo, generator=g, device=device, dtype=dtype) / math.sqrt(self.D)
            yield lo, hi, G

    def map(self, c: torch.Tensor) -> torch.Tensor:
        return _remove(self.U, _BlockProject.apply(c, self))


def make_subspace(D: int, d: int | None, U: torch.Tensor | None = None, seed: int = 0,
                  memory_budget_mb: float = 2048, device="cpu", dtype=torch.float32, key: str = "d"):
    """A ``d``-dimensional random subspace orthogonal to the rows of ``U`` (``None``: all of it)."""
    k = 0 if U is None else U.shape[0]
    if d is None:
        return FullSubspace(D, U)
    if d < 1:
        raise ValueError(f"{key} = {d} must be a positive number of directions (or null for the full hyperplane)")
    if d > D - k:
        raise ValueError(f"{key} = {d} is larger than the parameter count allows: the model has {D} parameters "
                         f"and {D - k} directions orthogonal to the {k} excluded one(s)")
    budget = memory_budget_mb * 2**20
    itemsize = torch.finfo(dtype).bits // 8
    if 3 * D * d * itemsize <= budget:
        g = torch.Generator().manual_seed(seed)
        G = torch.randn(D, d, generator=g, dtype=dtype).to(device)
        G = _remove(U, G)
        G = _remove(U, G)  # twice: numerically clean orthogonality
        Q = torch.linalg.qr(G)[0]
        return MatrixSubspace(Q)
    block = max(1, int(budget // (2 * D * itemsize)))
    log.info("random subspace D=%d d=%d exceeds the memory budget (%.0f MB): block-wise projection, %d columns per block",
             D, d, memory_budget_mb, block)
    return BlockRandomSubspace(D, d, U, seed, block)


def orthonormal_rows(directions: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (rows) of the span of the rows of ``directions``."""
    q = torch.linalg.qr(directions.T.to(torch.float64))[0]
    return q.T.to(directions.dtype).contiguous()


# ---- optimisation inside an affine subspace -------------------------------------------------
@dataclass
class OptResult:
    point: torch.Tensor
    start_loss: float
    final_loss: float
    status: str
    history: list = field(default_factory=list)


def optimise_in_subspace(loss_fn, x0: torch.Tensor, subspace, steps: int, lr: float, optimizer: str = "adam",
                         momentum: float = 0.9, schedule: str = "cosine", record_every: int = 0) -> OptResult:
    """Minimise ``loss_fn(x0 + subspace.map(c))`` over ``c`` starting at ``c = 0``; returns the point,
    the loss before and after, the status and ``(step, loss)`` every ``record_every`` steps.

    A use of the training scaffold with one step per "epoch" (:func:`losslab.training.fit`):
    ``schedule`` is ``cosine`` (annealed over ``steps``) or ``constant``. A non-finite loss stops
    the run with status ``diverged`` and returns the last point whose loss was finite.
    """
    x0 = x0.detach()
    c = torch.zeros(subspace.n_coords, dtype=x0.dtype, device=x0.device, requires_grad=True)
    opt = make_optimizer([c], optimizer, lr, momentum)
    lr_at = epoch_schedule(schedule, lr, steps)
    with torch.no_grad():
        start = float(loss_fn(x0))
    before = good = c.detach().clone()

    def step(_) -> dict[str, torch.Tensor]:
        nonlocal before
        before = c.detach().clone()
        return {"loss": loss_fn(x0 + subspace.map(c))}

    def record(epoch: int, stats: EpochStats, ok: bool) -> list[dict]:
        nonlocal good
        if not (ok and epoch):
            return []
        good = before
        return [{"step": epoch - 1, "loss": stats.mean("loss")}] if record_every and (epoch - 1) % record_every == 0 else []

    run = fit(Job(opt, lr_at, step, record, [c], steps, torch.Generator(), log_epochs=False, progress=False))
    with torch.no_grad():
        x = x0 + subspace.map(c.detach() if run.status == "ok" else good)
        final = float(loss_fn(x))
    status = run.status if math.isfinite(final) else "diverged"
    history = [(r["step"], r["loss"]) for r in run.history.to_dict("records")]
    return OptResult(x.detach(), start, final, status, history)


# ---- paths -----------------------------------------------------------------------------
def check_optima(optima, min_count: int = 2, key: str = "optima") -> torch.Tensor:
    optima = list(optima)
    if len(optima) < min_count:
        raise ValueError(f"{key}: an m-connector needs at least {min_count} optima, got {len(optima)}")
    shapes = {tuple(o.shape) for o in optima}
    if len(shapes) != 1:
        raise ValueError(f"{key}: optima have different shapes {sorted(shapes)}; "
                         "all must be flat vectors of one architecture")
    if len(next(iter(shapes))) != 1:
        raise ValueError(f"{key}: optima must be flat 1-D vectors, got shape {next(iter(shapes))}")
    return torch.stack([o.detach() for o in optima])


def line_points(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    return a[None] + t[:, None] * (b - a)[None]


def polyline(t_nodes: torch.Tensor, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear path through ``points`` (at parameters ``t_nodes``), evaluated at ``t``."""
    t = torch.as_tensor(t, dtype=points.dtype, device=points.device).clamp(0, 1)
    tn = t_nodes.to(points.device, points.dtype)
    i = torch.searchsorted(tn, t, right=True).clamp(1, len(tn) - 1) - 1
    w = ((t - tn[i]) / (tn[i + 1] - tn[i]))[:, None]
    return points[i] * (1 - w) + points[i + 1] * w


@dataclass
class ConnectorResult:
    t: torch.Tensor  # [S + 1] node parameters
    points: torch.Tensor  # [S + 1, D]: a, optimised nodes, b
    start_loss: list  # loss at each node before optimisation (on the line)
    final_loss: list  # loss at each node after
    status: list
    subspace: str
    dim: int


def _connector_setup(a, b, segments: int, subspace: str):
    """The checked optima of a connector, the unit line direction (1 x D), D and the node t."""
    a, b = check_optima([a, b], 2, "connector endpoints")
    if segments < 2:
        raise ValueError(f"segments = {segments}: a connector needs at least 2 segments (one interior node)")
    if subspace not in ("shared", "per_point"):
        raise ValueError(f"subspace = {subspace!r}; allowed: shared, per_point")
    diff = b - a
    if float(diff.norm()) == 0:
        raise ValueError("the two optima are identical; there is nothing to connect")
    return a, b, (diff / diff.norm())[None], a.numel(), torch.linspace(0, 1, segments + 1, dtype=a.dtype)


def connector(loss_fn, a: torch.Tensor, b: torch.Tensor, segments: int, d: int | None, steps: int, lr: float,
              optimizer: str = "adam", subspace: str = "shared", seed: int = 0, memory_budget_mb: float = 2048,
              progress: bool = False) -> ConnectorResult:
    """Low-loss connector between optima ``a`` and ``b`` through hyperplanes normal to the line.

    ``subspace``: ``shared`` uses one random ``d``-dimensional subspace orthogonal to the line at
    every node (so deviations at different nodes are comparable); ``per_point`` draws a fresh one
    at each node; ``d = None`` uses the whole normal hyperplane.
    """
    a, b, U, D, t = _connector_setup(a, b, segments, subspace)
    mk = lambda k: make_subspace(D, d, U, seed if subspace == "shared" else derive_seed(seed, "node", k),
                                 memory_budget_mb, a.device, a.dtype)
    shared = mk(0)
    nodes, start, final, status = [a], [float(loss_fn(a).detach())], [float(loss_fn(a).detach())], ["ok"]
    for k in progress_bar(range(1, segments), progress, desc="connector nodes"):
        sub = shared if subspace == "shared" else mk(k)
        x0 = a + t[k] * (b - a)
        res = optimise_in_subspace(loss_fn, x0, sub, steps, lr, optimizer)
        log.info("node t=%.3f: loss %.4g -> %.4g (%s)", float(t[k]), res.start_loss, res.final_loss, res.status)
        nodes.append(res.point)
        start.append(res.start_loss)
        final.append(res.final_loss)
        status.append(res.status)
    lb = float(loss_fn(b).detach())
    nodes.append(b)
    start.append(lb)
    final.append(lb)
    status.append("ok")
    return ConnectorResult(t, torch.stack(nodes), start, final, status, shared.kind, shared.dim)


def load_hessian_inputs(paths, dataset_cfg: dict, evaluation: dict, short: dict, device="cpu"):
    """What a short-direction job reads: :func:`load_network_optima` plus the evaluation subsets
    and the fixed train subset of ``short["samples"]`` the Hessian is taken on ->
    (ds, fm, X, pts, ev, x, y)."""
    from . import data

    ds, fm, X, pts = load_network_optima(paths, dataset_cfg, device)
    ev = data.eval_from_config(ds, {"evaluation": evaluation}, device)
    x, y = data.subset(ev.train_x, ev.train_y, short["samples"], short["seed"])
    return ds, fm, X, pts, ev, x, y


@torch.no_grad()
def connector_table(res: ConnectorResult, loss_fn) -> pd.DataFrame:
    """One row per node of a connector: ``node``, ``t``, the loss (``loss_fn``, deterministic) on
    the straight line (``line_train_loss``) and at the optimised node (``node_train_loss``), the
    node's ``status`` and its distance from the line (``deviation_norm``); then ``subspace``,
    ``dim`` and ``D``."""
    a, b = res.points[0], res.points[-1]
    line = line_points(a, b, res.t)
    rows = [{"node": k, "t": float(res.t[k]), "line_train_loss": float(loss_fn(line[k])),
             "node_train_loss": float(loss_fn(res.points[k])), "status": res.status[k],
             "deviation_norm": float((res.points[k] - line[k]).norm())} for k in range(len(res.t))]
    return pd.DataFrame(rows).assign(subspace=res.subspace, dim=res.dim, D=a.numel())


def deviation_cosines(t: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the interior nodes' deviations from the straight line."""
    a, b = points[0], points[-1]
    dev = points[1:-1] - line_points(a, b, t[1:-1])
    dev = dev / dev.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return dev @ dev.T


def cosine_table(t: torch.Tensor, cos: torch.Tensor) -> pd.DataFrame:
    ti = t[1:-1]
    n = len(ti)
    return pd.DataFrame({
        "i": torch.arange(n).repeat_interleave(n).numpy(), "j": torch.arange(n).repeat(n).numpy(),
        "t_i": ti.repeat_interleave(n).numpy(), "t_j": ti.repeat(n).numpy(), "cosine": cos.reshape(-1).numpy(),
    })


# ---- m-connectors -------------------------------------------------------------------------
def barycentric_grid(n: int, resolution: int) -> torch.Tensor:
    """All points of the simplex with barycentric coordinates in multiples of ``1/resolution``."""
    if n < 2:
        raise ValueError(f"an m-connector needs at least 2 optima, got {n}")
    if resolution < 1:
        raise ValueError(f"resolution = {resolution} must be >= 1")
    rows = [c for c in itertools.product(range(resolution + 1), repeat=n - 1) if sum(c) <= resolution]
    rows = [(resolution - sum(c),) + c for c in rows]
    return torch.tensor(rows, dtype=torch.float64) / resolution


@dataclass
class MConnectorResult:
    bary: torch.Tensor  # [m, n] barycentric coordinates of the nodes
    points: torch.Tensor  # [m, D] optimised nodes (vertices are the optima themselves)
    start_loss: list
    final_loss: list
    status: list
    resolution: int


def hull_basis(optima: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning the directions of the optima's affine hull."""
    return orthonormal_rows(optima[1:] - optima[0])


def m_connector(loss_fn, optima, resolution: int, d: int | None, steps: int, lr: float, optimizer: str = "adam",
                seed: int = 0, memory_budget_mb: float = 2048, nodes: torch.Tensor | None = None,
                progress: bool = False) -> MConnectorResult:
    """Optimise the barycentric-grid nodes of the optima's convex hull in hyperplanes orthogonal to
    the hull's affine span (one shared random ``d``-dimensional subspace, or the full complement)."""
    X = check_optima(optima, 2, "m-connector optima")
    n, D = X.shape
    bary = barycentric_grid(n, resolution) if nodes is None else nodes.to(torch.float64)
    U = hull_basis(X)
    sub = make_subspace(D, d, U, seed, memory_budget_mb, X.device, X.dtype)
    pts, start, final, status = [], [], [], []
    for w in progress_bar(bary, progress, desc="m-connector nodes"):
        x0 = w.to(X.dtype).to(X.device) @ X
        if int((w > 0).sum()) == 1:  # a vertex: the optimum itself
            l0 = float(loss_fn(x0).detach())
            pts.append(x0)
            start.append(l0)
            final.append(l0)
            status.append("ok")
            continue
        res = optimise_in_subspace(loss_fn, x0, sub, steps, lr, optimizer)
        log.info("node %s: loss %.4g -> %.4g", [round(float(v), 3) for v in w], res.start_loss, res.final_loss)
        pts.append(res.point)
        start.append(res.start_loss)
        final.append(res.final_loss)
        status.append(res.status)
    return MConnectorResult(bary, torch.stack(pts), start, final, status, resolution)


def simplex_centre(loss_fn, optima, d: int | None, steps: int, lr: float, optimizer: str = "adam", seed: int = 0,
                   memory_budget_mb: float = 2048) -> OptResult:
    """The barycentre of the optima, optimised in a hyperplane orthogonal to their affine span."""
    X = check_optima(optima, 2, "m-connector optima")
    sub = make_subspace(X.shape[1], d, hull_basis(X), seed, memory_budget_mb, X.device, X.dtype)
    return optimise_in_subspace(loss_fn, X.mean(0), sub, steps, lr, optimizer)


def triangle_surface(res: MConnectorResult, query: torch.Tensor) -> torch.Tensor:
    """Points of the piecewise-linear surface through the optimised nodes of a 3-optima grid.

    The grid triangulates the simplex into small triangles; a query (barycentric, ``[q, 3]``) is
    the linear combination of the three nodes of the small triangle holding it.
    """
    if res.bary.shape[1] != 3:
        raise ValueError("triangle_surface needs an m-connector of exactly 3 optima")
    idx, wts = surface_weights(res.bary, res.resolution, query)
    return torch.stack([sum(w * res.points[k] for w, k in zip(ws, ks)) for ks, ws in zip(idx.tolist(), wts.tolist())])


def surface_weights(bary: torch.Tensor, resolution: int, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each barycentric query (``[q, 3]``): the indices (rows of ``bary``, a 3-optima grid of
    ``resolution``) of the three nodes of the small triangle holding it, and its weights on them
    (``[q, 3]`` each); the piecewise-linear surface at the query is that weighted sum of nodes."""
    r = resolution
    index = {tuple(int(round(v)) for v in (row * r).tolist()): i for i, row in enumerate(bary)}
    q = query.to(torch.float64) * r
    idx, out = [], []
    for u, v in zip(q[:, 1].tolist(), q[:, 2].tolist()):
        i, j = min(int(math.floor(u + 1e-9)), r), min(int(math.floor(v + 1e-9)), r)
        if i + j >= r:  # on the outer edge: step back into the grid
            i, j = (i - 1, j) if i > 0 else (i, j - 1)
        fu, fv = u - i, v - j
        if fu + fv <= 1 + 1e-12:
            tri = [(i, j), (i + 1, j), (i, j + 1)]
            wts = [1 - fu - fv, fu, fv]
        else:
            tri = [(i + 1, j + 1), (i, j + 1), (i + 1, j)]
            wts = [fu + fv - 1, 1 - fu, 1 - fv]
        idx.append([index[(r - a - b, a, b)] for a, b in tri])
        out.append(wts)
    return torch.tensor(idx, dtype=torch.long), torch.tensor(out, dtype=torch.float64)


# ---- the sampled variant: train the whole path or surface ----------------------------------
VARIANTS = ("paper", "sampled")


def _train_sampled(loss_at, n_free: int, n_coords: int, steps: int, lr: float, optimizer: str, seed: int,
                   dtype, device, progress: bool, desc: str) -> tuple[torch.Tensor, str]:
    """Adam/SGD over the coordinates ``C`` (``[n_free, n_coords]``, from 0) of ``loss_at(C, gen)``,
    a loss at one random point of the path or surface, cosine-annealed over ``steps``. A non-finite
    loss stops the run (status ``diverged``) and keeps the last coordinates whose loss was finite."""
    C = torch.zeros(n_free, n_coords, dtype=dtype, device=device, requires_grad=True)
    opt = make_optimizer([C], optimizer, lr)
    lr_at = epoch_schedule("cosine", lr, steps)
    gen = torch.Generator().manual_seed(derive_seed(seed, "sampled"))
    good, status = C.detach().clone(), "ok"
    for step in progress_bar(range(steps), progress, desc=desc):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        before = C.detach().clone()
        loss = loss_at(C, gen)
        if not torch.isfinite(loss):
            status = "diverged"
            break
        good = before
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (C.detach() if status == "ok" else good), status


def sampled_connector(loss_fn, a: torch.Tensor, b: torch.Tensor, segments: int, d: int | None, steps: int, lr: float,
                      optimizer: str = "adam", subspace: str = "shared", seed: int = 0, memory_budget_mb: float = 2048,
                      progress: bool = False) -> ConnectorResult:
    """A connector with the nodes and subspaces of :func:`connector`, trained as one path.

    Instead of minimising the loss at each node in its own hyperplane, every step draws one
    ``t ~ U(0, 1)`` and minimises the loss at the polyline's point there; the gradient reaches the
    two nodes of t's segment (each still moves only in its subspace normal to the line). This
    trains the points between the nodes, where the paper's algorithm leaves the path's peaks, as
    Garipov et al. train curves and Benton et al. (2021) train simplexes. The budget equals the
    paper algorithm's at the same settings: ``steps`` per interior node, ``steps * (segments - 1)``
    in all.
    """
    a, b, U, D, t = _connector_setup(a, b, segments, subspace)
    subs = [make_subspace(D, d, U, seed if subspace == "shared" else derive_seed(seed, "node", k), memory_budget_mb,
                          a.device, a.dtype) for k in ([1] if subspace == "shared" else range(1, segments))]
    sub_of = (lambda k: subs[0]) if subspace == "shared" else (lambda k: subs[k - 1])
    base = line_points(a, b, t)
    base[0], base[-1] = a, b  # the ends exactly (a + 1 * (b - a) is not b in floating point)

    def node(C, k):
        return base[k] if k in (0, segments) else base[k] + sub_of(k).map(C[k - 1])

    def loss_at(C, gen):
        u = float(torch.rand((), generator=gen)) * segments
        i = min(int(u), segments - 1)
        w = u - i
        return loss_fn((1 - w) * node(C, i) + w * node(C, i + 1))

    C, status = _train_sampled(loss_at, segments - 1, subs[0].n_coords, steps * (segments - 1), lr, optimizer, seed,
                               a.dtype, a.device, progress, "sampled connector")
    with torch.no_grad():
        nodes = torch.stack([node(C, k) for k in range(segments + 1)])
        start = [float(loss_fn(x)) for x in base]
        final = [float(loss_fn(x)) for x in nodes]
    log.info("sampled connector (%d steps): node losses %s -> %s (%s)", steps * (segments - 1),
             [round(v, 4) for v in start], [round(v, 4) for v in final], status)
    return ConnectorResult(t, nodes, start, final, [status] * (segments + 1), subs[0].kind, subs[0].dim)


def sampled_m_connector(loss_fn, optima, resolution: int, d: int | None, steps: int, lr: float,
                        optimizer: str = "adam", seed: int = 0, memory_budget_mb: float = 2048,
                        progress: bool = False) -> MConnectorResult:
    """An m-connector between three optima with the nodes and subspace of :func:`m_connector`,
    trained as one surface: every step draws a barycentric point uniformly on the simplex and
    minimises the loss at the piecewise-linear surface there (:func:`surface_weights`); the
    gradient reaches the nodes of the small triangle holding it. Budget: ``steps`` per optimised
    node, as the paper's algorithm at the same settings."""
    X = check_optima(optima, 3, "m-connector optima")
    if X.shape[0] != 3:
        raise ValueError(f"the sampled m-connector trains the surface over a triangle: 3 optima, got {X.shape[0]}")
    bary = barycentric_grid(3, resolution)
    sub = make_subspace(X.shape[1], d, hull_basis(X), seed, memory_budget_mb, X.device, X.dtype)
    base = bary.to(X.device, X.dtype) @ X
    free = [k for k, w in enumerate(bary) if int((w > 0).sum()) > 1]
    slot = {k: i for i, k in enumerate(free)}

    def node(C, k):
        return base[k] + sub.map(C[slot[k]]) if k in slot else base[k]

    def loss_at(C, gen):
        w = -torch.log(torch.rand(3, generator=gen, dtype=torch.float64).clamp_min(1e-12))
        idx, wts = surface_weights(bary, resolution, (w / w.sum())[None])
        return loss_fn(sum(float(c) * node(C, k) for c, k in zip(wts[0], idx[0].tolist())))

    C, status = _train_sampled(loss_at, len(free), sub.n_coords, steps * len(free), lr, optimizer, seed, X.dtype,
                               X.device, progress, "sampled m-connector")
    with torch.no_grad():
        pts = torch.stack([node(C, k) for k in range(len(bary))])
        start = [float(loss_fn(x)) for x in base]
        final = [float(loss_fn(x)) for x in pts]
    return MConnectorResult(bary, pts, start, final, [status] * len(bary), resolution)


# ---- matched-loss controls -----------------------------------------------------------------
MATCH_RTOL = 0.05  # a control matches when its loss is within 5 % of the target's
@torch.no_grad()
def matched_loss_point(loss_fn, a: torch.Tensor, b: torch.Tensor, target: float, t_max: float = 0.5,
                       scan: int = 11, bisections: int = 20, rtol: float = 0.05) -> dict:
    """The point of the straight line from ``a`` toward ``b`` (``t`` in ``[0, t_max]``) whose loss
    equals ``target``: a scan of ``scan`` evenly spaced t finds the first step over which the loss
    crosses the target, bisection refines it. Returns ``t``, the ``point``, its ``loss`` and
    ``matched`` (``|loss - target| <= rtol * target``); with no crossing, the scanned t whose loss
    is nearest the target, unmatched. Used as the loss-level control of a short-direction count."""
    ts = torch.linspace(0, t_max, scan, dtype=torch.float64)
    at = lambda t: a + float(t) * (b - a)  # noqa: E731
    losses = [float(loss_fn(at(t))) for t in ts]
    lo = next((i for i in range(scan - 1) if (losses[i] - target) * (losses[i + 1] - target) <= 0), None)
    if lo is None:
        i = min(range(scan), key=lambda k: abs(losses[k] - target))
        t, loss = float(ts[i]), losses[i]
    else:
        t0, t1, l0 = float(ts[lo]), float(ts[lo + 1]), losses[lo]
        t, loss = (t0, l0)
        for _ in range(bisections):
            t = 0.5 * (t0 + t1)
            loss = float(loss_fn(at(t)))
            if abs(loss - target) <= 1e-3 * rtol * abs(target):
                break
            if (l0 - target) * (loss - target) <= 0:
                t1 = t
            else:
                t0, l0 = t, loss
    return {"t": t, "point": at(t), "loss": loss, "target": float(target),
            "matched": bool(abs(loss - target) <= rtol * abs(target))}


# ---- networks -----------------------------------------------------------------------------
class NetworkLoss:
    """``vec -> training loss`` of a :class:`~losslab.flat.FlatModel` on fixed tensors.

    ``batch_size=None``: the full given data (deterministic; used for Lanczos). Otherwise each
    call draws a fresh seeded minibatch (stochastic optimisation on large training sets).
    BatchNorm layers use the batch statistics of the data they see (there are no fixed running
    statistics at a new point); dropout is off.
    """

    def __init__(self, fm, x: torch.Tensor, y: torch.Tensor, task: str, batch_size: int | None = None, seed: int = 0):
        from .flat import loss_fn

        self.fm, self.x, self.y, self.task = fm, x, y, task
        self.lossf = loss_fn(task)
        self.batch_size = batch_size if batch_size and batch_size < len(x) else None
        self.gen = torch.Generator().manual_seed(seed)
        self.bns = [m for m in fm.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def __call__(self, vec: torch.Tensor) -> torch.Tensor:
        x, y = self.x, self.y
        if self.batch_size:
            idx = torch.randint(len(x), (self.batch_size,), generator=self.gen).to(x.device)
            x, y = x[idx], y[idx]
        module = self.fm.module
        modes = [(m, m.training) for m in module.modules()]
        tracked = [(m, m.track_running_stats) for m in self.bns]
        module.eval()  # dropout off
        for m in self.bns:  # batch statistics, and no in-place running-stat update (safe under torch.func)
            m.train()
            m.track_running_stats = False
        try:
            return self.lossf(self.fm.forward(vec, x), y)
        finally:
            for m, mode in modes:
                m.training = mode
            for m, flag in tracked:
                m.track_running_stats = flag


def agreement(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """Fraction of predictions equal to a reference's predictions."""
    return float((pred == ref).float().mean())


def load_network_optima(paths, dataset_cfg: dict, device="cpu"):
    """Endpoint checkpoints -> (dataset on ``device``, FlatModel, stacked flat optima, Points).

    Raises a clear error when the checkpoints come from different architectures.
    """
    from . import data, io, models
    from .flat import FlatModel

    points = {str(p): io.load_point(p) for p in paths}
    io.check_compatible(points)
    pts = list(points.values())
    for name, p in points.items():
        if p.status != "ok":
            log.warning("optimum %s has status %s", name, p.status)
    ds = data.load_dataset(**dataset_cfg).to(device)
    fm = FlatModel(models.build_model(pts[0].model_spec, ds.in_shape, ds.num_outputs).to(device))
    X = check_optima([p.flat.to(device) for p in pts], 1, "optima")
    return ds, fm, X, pts


@torch.no_grad()
def evaluate_vectors(fm, ev, task: str, vectors: torch.Tensor, refs: dict | None = None,
                     batch_size: int = 4096) -> list[dict]:
    """Loss, accuracy and (classification) agreement with reference predictions at each vector.

    ``refs`` maps a name to ``{split: predictions}``; the result has ``agree_<name>`` columns:
    the fraction of the split's predictions equal to that reference's. BatchNorm statistics are
    recomputed at each vector on ``ev.bn_x``.
    """
    from .flat import metrics_from_outputs

    rows = []
    for i, vec in enumerate(vectors):
        buffers = fm.recompute_bn(vec, ev.bn_x) if fm.has_bn else None
        for split in ("train", "test"):
            x, y = ev.split(split)
            out = fm.outputs(vec, x, buffers, batch_size)
            row = {"index": i, "split": split, **metrics_from_outputs(out, y, task)}
            if task == "classification":
                pred = out.argmax(-1)
                for name, ref in (refs or {}).items():
                    row[f"agree_{name}"] = agreement(pred, ref[split])
            rows.append(row)
    return rows


@torch.no_grad()
def reference_predictions(fm, ev, vec: torch.Tensor, batch_size: int = 4096) -> dict:
    buffers = fm.recompute_bn(vec, ev.bn_x) if fm.has_bn else None
    return {s: fm.outputs(vec, ev.split(s)[0], buffers, batch_size).argmax(-1) for s in ("train", "test")}


def evaluate_connector(fm, ev, task: str, t_nodes: torch.Tensor, nodes: torch.Tensor, eval_points: int,
                       batch_size: int = 4096) -> pd.DataFrame:
    """The straight line between a connector's ends and the connector (the polyline through
    ``nodes`` at ``t_nodes``), each at ``eval_points`` evenly spaced t: one row per (path, t,
    split) of :func:`evaluate_vectors` with agreement columns ``agree_a``/``agree_b`` (with the
    ends' predictions), ``bn_policy`` and the subset sizes."""
    a, b = nodes[0], nodes[-1]
    refs = {"a": reference_predictions(fm, ev, a, batch_size), "b": reference_predictions(fm, ev, b, batch_size)}
    t = torch.linspace(0, 1, int(eval_points), dtype=a.dtype)
    frames = []
    for name, vecs in (("line", line_points(a, b, t)), ("connector", polyline(t_nodes, nodes, t))):
        df = pd.DataFrame(evaluate_vectors(fm, ev, task, vecs, refs, batch_size))
        df["t"] = t.cpu().numpy()[df["index"].to_numpy()]
        frames.append(df.drop(columns="index").assign(path=name))
    return pd.concat(frames, ignore_index=True).assign(bn_policy=fm.bn_policy(ev.bn_x.shape[0]), **ev.sizes)

