"""The wedge toy landscape of Fort & Jastrzebski (section 3) and its three experiments.

The landscape lives in ``D`` dimensions. Its low-loss set is the union of all axis-aligned
``(D - s)``-dimensional wedges: the coordinate subspaces where some ``s`` coordinates are zero
(``s`` short directions, ``D - s`` long ones). The surrogate loss of a point is its Euclidean
distance to the nearest wedge: sort the coordinates by absolute value, keep the ``s``
smallest and take the root of the sum of their squares. With ``rotate=True`` the whole system
is turned by a seeded random orthogonal matrix first, so nothing depends on the wedges being
aligned with the axes.

The experiments are plain functions returning tables:

* :func:`hyperplane_experiment` -- optimise inside random ``d``-dimensional affine planes for a
  range of ``d`` (loss reaches zero once ``d >= s``);
* :func:`tunnel_experiment` -- two optima on different wedges, their straight line and the
  connector of :mod:`losslab.connectors` between them;
* :func:`radial_experiment` -- loss against distance along random unit directions from a point
  near a wedge (the "circular well").
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from . import connectors
from .seeds import derive_seed


def check_dims(D: int, s: int) -> None:
    if D < 2:
        raise ValueError(f"wedge.D = {D} must be at least 2")
    if not 1 <= s < D:
        raise ValueError(f"wedge.s = {s} short directions must satisfy 1 <= s < D = {D} "
                         "(s >= D leaves no long direction, the wedges would be a single point)")


def random_orthogonal(D: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """A Haar-random orthogonal ``D x D`` matrix (QR of a Gaussian with sign fix)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q.to(dtype)


class WedgeLoss:
    """Surrogate loss: distance to the nearest ``(D - s)``-long wedge. Accepts ``[..., D]``."""

    def __init__(self, D: int, s: int, rotate: bool = False, seed: int = 0):
        check_dims(D, s)
        self.D, self.s, self.rotate, self.seed = D, s, rotate, seed
        self.rotation = random_orthogonal(D, seed) if rotate else None

    def coords(self, w: torch.Tensor) -> torch.Tensor:
        """Coordinates in the wedges' own frame (``w`` itself unless rotated)."""
        if w.shape[-1] != self.D:
            raise ValueError(f"point has {w.shape[-1]} coordinates, the wedge landscape has D = {self.D}")
        if self.rotation is None:
            return w
        return w @ self.rotation.to(w.device, w.dtype)

    def short_set(self, w: torch.Tensor) -> torch.Tensor:
        """Indices of the ``s`` coordinates that are zero on the nearest wedge."""
        return torch.topk(self.coords(w).abs(), self.s, dim=-1, largest=False).indices

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        z = self.coords(w)
        small = torch.topk(z.abs(), self.s, dim=-1, largest=False).values
        return torch.linalg.vector_norm(small, dim=-1)

    def nearest_point(self, w: torch.Tensor) -> torch.Tensor:
        """The projection of ``w`` onto its nearest wedge (zero its ``s`` smallest coordinates)."""
        z = self.coords(w).clone()
        z.scatter_(-1, self.short_set(w), 0.0)
        return z if self.rotation is None else z @ self.rotation.to(w.device, w.dtype).T


def random_init(loss: WedgeLoss, generator: torch.Generator, n: int | None = None, mean: float = 0.0,
                std: float = 1.0) -> torch.Tensor:
    """Component-wise random start: ``mean + std * N(0, 1)`` along the wedges' own axes.

    A positive ``mean`` starts the points away from the origin, where all wedges meet, so the
    coordinates that are not short stay clear of zero (the wedges' long directions).
    """
    shape = (loss.D,) if n is None else (n, loss.D)
    z = mean + std * torch.randn(*shape, generator=generator)
    return z if loss.rotation is None else z @ loss.rotation.T


# ---- experiment 1: random hyperplanes -------------------------------------------------------
def hyperplane_experiment(D: int, s: int, dims, planes: int, steps: int, lr: float, seed: int = 0,
                          rotate: bool = False, optimizer: str = "adam", init_mean: float = 0.0,
                          init_std: float = 1.0) -> pd.DataFrame:
    """Minimise the surrogate inside random ``d``-dimensional affine planes ``w = w0 + P c``.

    ``w0`` is a random component-wise normal offset, ``P`` a random orthonormal ``D x d`` basis.
    One row per (d, plane): loss at the plane's offset and after optimisation.
    """
    loss = WedgeLoss(D, s, rotate, seed)
    dims = [int(d) for d in dims]
    bad = [d for d in dims if not 1 <= d <= D]
    if bad:
        raise ValueError(f"wedge.hyperplanes.dims {bad} must lie in 1..D = {D} (the parameter count)")
    rows = []
    for d in dims:
        for p in range(planes):
            g = torch.Generator().manual_seed(derive_seed(seed, "plane", d, p))
            w0 = random_init(loss, g, None, init_mean, init_std)
            basis = torch.linalg.qr(torch.randn(D, d, generator=g))[0]
            sub = connectors.MatrixSubspace(basis)
            res = connectors.optimise_in_subspace(loss, w0, sub, steps=steps, lr=lr, optimizer=optimizer)
            rows.append({"D": D, "s": s, "d": d, "plane": p, "rotate": rotate, "start_loss": float(loss(w0)),
                         "final_loss": res.final_loss, "status": res.status})
    return pd.DataFrame(rows)


# ---- experiment 2: tunnel between two optima --------------------------------------------------
@dataclass
class Tunnel:
    optima: torch.Tensor  # [2, D]
    result: "connectors.ConnectorResult"


def train_optima(loss: WedgeLoss, n: int, steps: int, lr: float, seed: int, init_mean: float = 0.0,
                 init_std: float = 1.0, optimizer: str = "adam") -> torch.Tensor:
    """``n`` random initialisations, each optimised in the full space until it sits on a wedge."""
    g = torch.Generator().manual_seed(seed)
    starts = random_init(loss, g, n, init_mean, init_std)
    out = []
    for w0 in starts:
        res = connectors.optimise_in_subspace(loss, w0, connectors.FullSubspace(loss.D), steps=steps, lr=lr,
                                              optimizer=optimizer)
        out.append(res.point)
    return torch.stack(out)


def tunnel_experiment(D: int, s: int, segments: int, d, subspace: str, steps: int, lr: float,
                      eval_points: int, seed: int = 0, rotate: bool = False, optimizer: str = "adam",
                      init_mean: float = 0.0, init_std: float = 1.0):
    """Two optima, their straight line and the connector. Returns (path table, cosine table, summary)."""
    loss = WedgeLoss(D, s, rotate, seed)
    optima = train_optima(loss, 2, steps, lr, seed, init_mean, init_std, optimizer)
    a, b = optima
    res = connectors.connector(loss, a, b, segments=segments, d=d, subspace=subspace, steps=steps, lr=lr,
                               optimizer=optimizer, seed=seed)
    t = torch.linspace(0, 1, eval_points)
    with torch.no_grad():
        on_line = loss(connectors.line_points(a, b, t))
        on_conn = loss(connectors.polyline(res.t, res.points, t))
    path = pd.concat([
        pd.DataFrame({"path": "line", "t": t.numpy(), "loss": on_line.numpy()}),
        pd.DataFrame({"path": "connector", "t": t.numpy(), "loss": on_conn.numpy()}),
    ], ignore_index=True).assign(D=D, s=s, rotate=rotate)
    cos = connectors.deviation_cosines(res.t, res.points)
    cos_df = connectors.cosine_table(res.t, cos).assign(D=D, s=s, rotate=rotate)
    sa, sb = set(loss.short_set(a).tolist()), set(loss.short_set(b).tolist())
    summary = {"line_max": float(on_line.max()), "connector_max": float(on_conn.max()),
               "endpoint_loss": float(loss(optima).max()), "shared_short": len(sa & sb)}
    return path, cos_df, summary


# ---- experiment 3: radial probe -------------------------------------------------------------
def radial_experiment(D: int, s: int, offset: float, directions: int, max_radius: float, points: int,
                      steps: int, lr: float, seed: int = 0, rotate: bool = False, init_mean: float = 0.0,
                      init_std: float = 1.0, optimizer: str = "adam") -> pd.DataFrame:
    """Loss along ``w + r u`` for many random unit ``u`` from a point ``w`` near a wedge.

    ``w`` is an optimised point moved ``offset`` away from its wedge along a random short
    direction, so it is near, not on, the wedge (loss = ``offset`` at r = 0).
    """
    loss = WedgeLoss(D, s, rotate, seed)
    g = torch.Generator().manual_seed(derive_seed(seed, "radial bump"))
    w = loss.nearest_point(train_optima(loss, 1, steps, lr, derive_seed(seed, "radial optimum"), init_mean, init_std,
                                        optimizer)[0])
    z = torch.zeros(D)
    idx = loss.short_set(w)
    bump = torch.randn(s, generator=g)
    z[idx] = bump / bump.norm() * offset
    w = w + (z if loss.rotation is None else z @ loss.rotation.T)
    u = torch.randn(directions, D, generator=g)
    u = u / u.norm(dim=1, keepdim=True)
    r = torch.linspace(0, max_radius, points)
    with torch.no_grad():
        vals = loss(w + r[None, :, None] * u[:, None, :])  # [directions, points]
    return pd.DataFrame({
        "direction": torch.arange(directions).repeat_interleave(points).numpy(),
        "r": r.repeat(directions).numpy(),
        "loss": vals.reshape(-1).numpy(),
    }).assign(D=D, s=s, offset=offset, rotate=rotate)


def transition_dim(table: pd.DataFrame, tol: float = 1e-2) -> int | None:
    """The smallest d whose every plane reached a loss below ``tol`` (None if none did)."""
    ok = table.groupby("d")["final_loss"].max() < tol
    ok = ok[ok]
    return int(ok.index.min()) if len(ok) else None
