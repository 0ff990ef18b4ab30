"""Loss planes: a 2-D slice ``w(x, y) = origin + x * e1 + y * e2`` of weight space on a grid.

* :func:`plane_from_points` -- the plane through three flat vectors (blog construction:
  ``u = w2 - w1``, ``v = w3 - w1`` with ``v`` orthogonalised against ``u``). The basis is
  normalised, so ``(x, y)`` are Euclidean coordinates in weight space: ``w1`` sits at (0, 0),
  ``w2`` at (|u|, 0) and ``w3`` at (<w3 - w1, e1>, |v_perp|).
* :func:`random_plane` -- an optimum plus two Gaussian directions (the "radial well" slice of
  Fort & Jastrzebski, Figure 2), scaled to the optimum's norm or filter-wise (Li et al. 2018).
* :func:`grid_axes`, :func:`tile_ranges` -- a G x G grid with margins, split into tiles.
* :class:`GridEngine` / :func:`evaluate_grid` -- train/test loss and accuracy at many grid
  points: the evaluation engine of :mod:`losslab.engine` with the plane as its basis. It
  preloads the data once, never syncs with the host per point, bounds its working memory by a
  budget, and picks its levers per job (dense products for small convolutions, channels-last
  data, the first-layer trick ``z0 + x z1 + y z2``, vmap over many points or a per-point loop,
  chunk sizes); ``describe()`` says which path ran.
* :func:`reference_point` -- the field's one-point-at-a-time loop, the engine's test oracle.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .engine import EngineOptions, Evaluator, forward_flops  # noqa: F401 (re-exported)
from .flat import BN_BATCH, FlatModel, filter_normalise, layout_of  # noqa: F401 (re-exported)
from .io import ArtifactError, load_tensors, save_tensors

log = logging.getLogger("losslab")


# ----- planes ----------------------------------------------------------------------------
@dataclass
class Plane:
    """``w(x, y) = origin + x * e1 + y * e2`` plus named points with their (x, y)."""

    origin: torch.Tensor
    e1: torch.Tensor
    e2: torch.Tensor
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    kind: str = "points"
    meta: dict = field(default_factory=dict)

    def at(self, xy) -> torch.Tensor:
        """Flat vectors at coordinates ``xy`` ([P, 2] -> [P, D]; [2] -> [D])."""
        xy = torch.as_tensor(xy, dtype=self.origin.dtype, device=self.origin.device)
        basis = torch.stack([self.e1, self.e2])
        return self.origin + xy @ basis

    def project(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Least-squares plane coordinates of vectors ``w`` ([P, D] or [D]) and the distance
        of each vector from the plane (its off-plane residual)."""
        w = torch.as_tensor(w).to(self.origin.device, torch.float64).reshape(-1, self.origin.numel())
        basis = torch.stack([self.e1, self.e2]).double()
        d = w - self.origin.double()
        gram = basis @ basis.T
        coef = torch.linalg.solve(gram, basis @ d.T).T  # [P, 2]
        resid = (d - coef @ basis).norm(dim=1)
        return coef.cpu().numpy(), resid.cpu().numpy()

    def to_dict(self) -> dict:
        return {
            "format": "losslab.plane/1",
            "origin": self.origin.detach().cpu(),
            "e1": self.e1.detach().cpu(),
            "e2": self.e2.detach().cpu(),
            "points": {k: [float(v[0]), float(v[1])] for k, v in self.points.items()},
            "kind": self.kind,
            "meta": dict(self.meta),
        }


def save_plane(plane: Plane, path) -> None:
    save_tensors(plane.to_dict(), path)


def load_plane(path, map_location="cpu") -> Plane:
    obj = load_tensors(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != "losslab.plane/1":
        raise ArtifactError(f"checkpoint {path} is not a losslab plane")
    pts = {k: (float(v[0]), float(v[1])) for k, v in obj["points"].items()}
    return Plane(obj["origin"], obj["e1"], obj["e2"], pts, obj["kind"], dict(obj["meta"]))


def plane_from_points(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor,
                      names: tuple[str, str, str] = ("w1", "w2", "w3")) -> Plane:
    """The plane through three flat vectors with an orthonormal basis (see module doc)."""
    if not (w1.shape == w2.shape == w3.shape) or w1.ndim != 1:
        raise ValueError(f"three flat vectors of one length are needed, got shapes {w1.shape}, {w2.shape}, {w3.shape}")
    w1, w2, w3 = (w.double() for w in (w1, w2, w3))
    u = w2 - w1
    v = w3 - w1
    un = u.norm()
    if un == 0:
        raise ValueError(f"points {names[0]} and {names[1]} coincide: they do not define a plane")
    e1 = u / un
    vx = v @ e1
    vp = v - vx * e1
    vn = vp.norm()
    if vn <= 1e-6 * max(float(v.norm()), 1e-30):  # float32 inputs
        raise ValueError(f"points {', '.join(names)} are collinear: they do not define a plane")
    e2 = vp / vn
    pts = {names[0]: (0.0, 0.0), names[1]: (float(un), 0.0), names[2]: (float(vx), float(vn))}
    f = torch.float32
    return Plane(w1.to(f), e1.to(f), e2.to(f), pts, "points")


def random_plane(origin: torch.Tensor, seed: int, normalization: str = "norm", layout=None) -> Plane:
    """An optimum plus two random Gaussian directions.

    ``normalization="norm"``: the directions are orthogonalised and scaled to ``|origin|``, so
    a coordinate of 1 is a step as long as the optimum's own weight vector.
    ``"unit"``: orthonormal unit directions, so coordinates are Euclidean distances in weight
    space (the scale of the radial tunnel widths).
    ``"filter"``: per-filter normalisation of Li et al. 2018 (needs the parameter ``layout``,
    see :func:`layout_of`); not orthogonalised
    (two random directions in high dimension are nearly orthogonal anyway).
    """
    g = torch.Generator().manual_seed(int(seed))
    w = origin.detach().cpu().float()
    d1 = torch.randn(w.shape, generator=g)
    d2 = torch.randn(w.shape, generator=g)
    if normalization in ("norm", "unit"):
        scale = w.norm() if normalization == "norm" else torch.tensor(1.0)
        if scale == 0:
            raise ValueError("the optimum is the zero vector; use normalization 'filter' or another point")
        d1 = d1 / d1.norm()
        d2 = d2 - (d2 @ d1) * d1
        d1, d2 = d1 * scale, d2 / d2.norm() * scale
    elif normalization == "filter":
        if layout is None:
            raise ValueError("filter normalisation needs the model's parameter layout")
        d1, d2 = filter_normalise(d1, w, layout), filter_normalise(d2, w, layout)
    else:
        raise ValueError(f"unknown direction normalization {normalization!r}; allowed: norm, unit, filter")
    return Plane(origin.float(), d1.to(origin.device), d2.to(origin.device), {"optimum": (0.0, 0.0)}, "random",
                 {"seed": int(seed), "normalization": normalization})


def curve_plane(curve) -> Plane:
    """The plane of a curve (a ``curve.pt`` path, or the checkpoint dict itself): through its
    endpoints control[0], control[-1] and its middle bend control[(k + 2) // 2] (the only bend
    for k = 1). w1 sits at (0, 0) and w2 on the x axis."""
    from .curves import load_curve

    cv = curve if isinstance(curve, dict) else load_curve(curve)
    control = cv["control"].float()
    mid = control.shape[0] // 2
    plane = plane_from_points(control[0], control[-1], control[mid], names=("w1", "w2", "bend"))
    plane.kind = "curve"
    plane.meta.update(curve_kind=cv["kind"], bends=control.shape[0] - 2, bend_index=mid)
    return plane


def frame_epochs(n_epochs: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` epochs of 0..n_epochs, evenly spread, first and last kept."""
    return np.unique(np.round(np.linspace(0, n_epochs, min(max_frames, n_epochs + 1))).astype(int))


TRACK_BYTES = 256 << 20  # memory for the curve points projected at once by curve_track


def curve_track(plane: Plane, final, epochs=None, t_marks=(), n_t: int = 61, max_frames: int | None = None) -> pd.DataFrame:
    """phi(t) of the final curve and of the saved epochs projected onto ``plane``.

    ``final``: a curve checkpoint (path or dict); ``epochs``: its per-epoch file (``curves.save_curve_epochs``),
    of which at most ``max_frames`` epochs are kept. Columns: source (final | epoch), epoch (-1 for
    the final curve), t, x, y, residual (distance of phi(t) from the plane: 0 for a quadratic
    Bezier curve in its own plane), mark (t is one of ``t_marks``).
    """
    from . import curves

    ts = np.unique(np.concatenate([np.linspace(0, 1, n_t), np.asarray(list(t_marks), dtype=float)]))
    marks = set(np.round(np.asarray(list(t_marks), dtype=float), 9))
    cv = final if isinstance(final, dict) else curves.load_curve(final)
    items = [("final", -1, cv["kind"], cv["control"])]
    if epochs is not None:
        ep = curves.load_curve_epochs(epochs)
        n = ep["controls"].shape[0] - 1
        keep = frame_epochs(n, max_frames or n + 1)
        items += [("epoch", int(e), ep["kind"], ep["controls"][e]) for e in keep]
    rows = []
    for source, epoch, kind, control in items:
        if control.shape[1] != plane.origin.numel():
            raise ArtifactError(f"curve {final if epoch < 0 else epochs} has {control.shape[1]} parameters, "
                                f"the plane {plane.origin.numel()}")
        # phi(t) for a few t at a time: all t at once holds len(ts) x (bends + 2) copies of the
        # network in float64 (over 20 GB for a ResNet-18)
        control = control.double()
        step = max(1, int(TRACK_BYTES // (8 * control.numel())))
        parts = [plane.project(curves.point(kind, control, torch.tensor(ts[i:i + step], dtype=torch.float64)))
                 for i in range(0, len(ts), step)]
        xy = np.concatenate([np.asarray(p[0]) for p in parts])
        res = np.concatenate([np.asarray(p[1]) for p in parts])
        rows.append(pd.DataFrame({"source": source, "epoch": epoch, "t": ts, "x": xy[:, 0], "y": xy[:, 1],
                                  "residual": res, "mark": [round(float(t), 9) in marks for t in ts]}))
    return pd.concat(rows, ignore_index=True).sort_values(["epoch", "t"], kind="stable").reset_index(drop=True)


# ----- grids and tiles ---------------------------------------------------------------------
def grid_bounds(plane: Plane, margin: float, extent: float | None = None) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax): the bounding box of the plane's points grown by ``margin``
    times its larger side, or ``[-extent, extent]^2`` around the origin for a random plane."""
    if extent is not None:
        return (-float(extent), float(extent), -float(extent), float(extent))
    xy = np.array(list(plane.points.values()), dtype=float)
    lo, hi = xy.min(0), xy.max(0)
    pad = margin * float((hi - lo).max())
    if pad == 0:
        raise ValueError("the plane's points span no area; give an extent")
    return (float(lo[0] - pad), float(hi[0] + pad), float(lo[1] - pad), float(hi[1] + pad))


def grid_axes(bounds, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    if resolution < 2:
        raise ValueError(f"planes.resolution must be at least 2, got {resolution}")
    xmin, xmax, ymin, ymax = bounds
    return np.linspace(xmin, xmax, resolution), np.linspace(ymin, ymax, resolution)


def make_plane(kind: str, vectors: list, names: list, margin: float, random: dict | None = None, layout=None,
               name: str = "") -> Plane:
    """A plane of ``kind`` with its grid bounds in ``meta["bounds"]``.

    ``points``: through three flat vectors (``vectors``), labelled ``names``; ``random``: the
    optimum ``vectors[0]`` (labelled ``names[0]``) with two random directions of
    ``random = {direction_seed, normalization, extent}`` (``layout``: the parameter layout, for
    filter normalisation); ``curve``: the plane of the curve ``vectors[0]`` (a curve checkpoint
    path or dict, see :func:`curve_plane`). Bounds: :func:`grid_bounds` with ``margin`` (the
    ``extent`` square of a random plane)."""
    if kind == "points":
        plane = plane_from_points(*vectors, names=tuple(names))
        extent = None
    elif kind == "random":
        plane = random_plane(vectors[0], random["direction_seed"], random["normalization"], layout=layout)
        plane.points = {names[0]: (0.0, 0.0)}
        extent = random["extent"]
    elif kind == "curve":
        plane = curve_plane(vectors[0])
        extent = None
    else:
        raise ValueError(f"unknown plane kind {kind!r}; known: points, random, curve")
    plane.meta.update(name=name, bounds=list(grid_bounds(plane, margin, extent)))
    return plane


def define_plane(p: dict, paths: list, spec_point) -> Plane:
    """The plane a ``plane_basis`` job defines (``p``: name, kind, names, margin, random), from
    its defining checkpoints ``paths`` (:func:`make_plane`). Raises ArtifactError when the plane's
    vectors do not fit the model of ``spec_point``."""
    from . import io

    layout = None
    if p["kind"] == "points":
        pts = {n: io.load_point(path) for n, path in zip(p["names"], paths)}
        io.check_compatible(pts)
        vectors = [pt.flat for pt in pts.values()]
    elif p["kind"] == "random":
        pt = io.load_point(paths[0])
        vectors, layout = [pt.flat], pt
    else:
        vectors = list(paths)
    plane = make_plane(p["kind"], vectors, p["names"], p["margin"], p.get("random"), layout, p["name"])
    if plane.origin.numel() != spec_point.flat.numel():
        raise ArtifactError(f"plane {p['name']}: its vectors have {plane.origin.numel()} entries but the model has "
                            f"{spec_point.flat.numel()} parameters")
    plane.meta.update(model_spec=spec_point.meta.get("model_spec"))
    return plane


def points_table(plane: Plane, p: dict) -> pd.DataFrame:
    """The defining points of a plane with their coordinates."""
    norm = (p.get("random") or {}).get("normalization", "")
    return pd.DataFrame([{"plane": p["name"], "kind": p["kind"], "normalization": norm, "point": n, "x": xy[0],
                          "y": xy[1]} for n, xy in plane.points.items()])


def tile_table(fm: FlatModel, plane: Plane, ev, task: str, resolution: int, tiles: int, i: int, j: int,
               options: EngineOptions, device=None, splits=("train", "test"), progress: bool = True) -> pd.DataFrame:
    """Tile (i, j) of the plane's G x G grid: :func:`evaluate_grid` rows with grid indices ix, iy."""
    if plane.origin.numel() != fm.numel:
        raise ArtifactError(f"plane {plane.meta.get('name')} has vectors of length {plane.origin.numel()}, "
                            f"the model has {fm.numel} parameters")
    xs, ys = grid_axes(plane.meta["bounds"], resolution)
    X, Y, ix, iy = tile_coords(xs, ys, tiles, i, j)
    df = evaluate_grid(fm, plane, X, Y, ev, task, options, device, progress=progress, splits=splits)
    df["ix"] = np.tile(ix, len(splits))
    df["iy"] = np.tile(iy, len(splits))
    return df.assign(tile=f"{i}_{j}", resolution=resolution, **ev.sizes)


def whole_grid(fm: FlatModel, p: Plane, ev, task: str, resolution: int, options: EngineOptions | None = None,
               device=None, splits=("train", "test"), progress: bool = True, **labels) -> pd.DataFrame:
    """The plane's whole G x G grid in one call: the single tile of :func:`tile_table`, with the
    ``labels`` as columns, checked and sorted as a gathered grid (:func:`losslab.summaries.gather_tiles`)."""
    from .summaries import gather_tiles

    tile = tile_table(fm, p, ev, task, resolution, 1, 0, 0, options or EngineOptions(), device, splits, progress)
    return gather_tiles([tile.assign(**labels)], resolution, p.meta.get("name") or "the plane")


def tile_ranges(n: int, tiles: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``tiles`` contiguous (start, stop) ranges of near-equal size."""
    if not 1 <= tiles <= n:
        raise ValueError(f"planes.tiles_per_side must be between 1 and the resolution ({n}), got {tiles}")
    edges = np.linspace(0, n, tiles + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def tile_coords(xs: np.ndarray, ys: np.ndarray, tiles: int, i: int, j: int):
    """Coordinates and indices of tile (i, j): x-range i, y-range j; x varies fastest."""
    (x0, x1), (y0, y1) = tile_ranges(len(xs), tiles)[i], tile_ranges(len(ys), tiles)[j]
    iy, ix = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), indexing="ij")
    ix, iy = ix.ravel(), iy.ravel()
    return xs[ix], ys[iy], ix, iy


# ----- the engine --------------------------------------------------------------------------
class GridEngine(Evaluator):
    """Loss and accuracy at many points ``origin + x e1 + y e2`` of one plane on fixed,
    preloaded subsets: an :class:`losslab.engine.Evaluator` with the plane as its basis (so the
    first-layer trick applies). Points go through :meth:`evaluate` in any number; results stay on
    the device until the end of the call (one host transfer per call, none per point)."""

    def __init__(self, fm: FlatModel, plane: Plane, ev, task: str, options: EngineOptions | None = None,
                 device: torch.device | str | None = None):
        super().__init__(fm, ev, task, options, device, basis=(plane.origin, torch.stack([plane.e1, plane.e2])))

    def evaluate(self, coords, splits=("train", "test")) -> dict[str, np.ndarray]:
        """Coordinates ``[P, 2]`` -> arrays ``{split}_loss`` (mean) and ``{split}_accuracy`` of
        length P for the ``splits`` (accuracy NaN for regression)."""
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        res = self.evaluate_coefs(torch.as_tensor(coords, dtype=torch.float32), tuple(splits))
        sums = torch.stack([res[s][k] for s in splits for k in ("loss", "correct")], 1).cpu().numpy()
        out = {}
        for k, s in enumerate(splits):
            n = self.splits[s][0].shape[0]
            out[f"{s}_loss"] = sums[:, 2 * k] / n
            out[f"{s}_accuracy"] = sums[:, 2 * k + 1] / n if self.task == "classification" else np.full(len(coords), np.nan)
        return out


def evaluate_grid(fm: FlatModel, plane: Plane, xs, ys, ev, task: str, options: EngineOptions | None = None,
                  device=None, engine: GridEngine | None = None, progress: bool = False,
                  splits=("train", "test")) -> pd.DataFrame:
    """Evaluate the points ``(xs[k], ys[k])`` of a plane. Long-format table: one row per point
    and split with columns x, y, split, loss, accuracy, status, bn_policy. The engine's path
    (``GridEngine.describe()``) and its speed go to the log.

    ``xs`` and ``ys`` are the coordinates of the points (equal lengths); for a full grid pass
    the raveled meshgrid (see :func:`tile_coords`). The sweeps stage reuses this for 2-D slices.
    """
    xs = np.asarray(xs, dtype=float).ravel()
    ys = np.asarray(ys, dtype=float).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"xs and ys must have equal lengths, got {xs.shape} and {ys.shape}")
    eng = engine or GridEngine(fm, plane, ev, task, options, device)
    coords = np.stack([xs, ys], 1)
    eng.plan(len(coords))
    t0 = time.perf_counter()
    if progress:
        from .device import progress_bar

        parts, step = [], max(1, len(coords) // 20)
        for lo in progress_bar(range(0, len(coords), step), desc="grid points", unit="block"):
            parts.append(eng.evaluate(coords[lo: lo + step], splits))
        res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else eng.evaluate(coords, splits)
    else:
        res = eng.evaluate(coords, splits)
    dt = time.perf_counter() - t0
    log.info("evaluated %d points in %.2f s (%.1f points/s) with %s", len(coords), dt, len(coords) / max(dt, 1e-9), eng.describe())
    rows = []
    for s in splits:
        rows.append(pd.DataFrame({"x": xs, "y": ys, "split": s, "loss": res[f"{s}_loss"], "accuracy": res[f"{s}_accuracy"]}))
    df = pd.concat(rows, ignore_index=True)
    df["status"] = np.where(np.isfinite(df["loss"]), "ok", "diverged")
    df["bn_policy"] = eng.bn_policy()
    return df


def reference_point(fm: FlatModel, vec: torch.Tensor, ev, task: str, batch_size: int = 128) -> dict[str, float]:
    """The field's one-point-at-a-time loop: load the weights into the module, recompute BN,
    then evaluate train and test subsets in minibatches with a host sync per batch."""
    from .flat import loss_fn

    module = fm.module
    fm.load_into(vec, module)
    if fm.has_bn:
        torch.optim.swa_utils.update_bn(list(ev.bn_x.split(BN_BATCH)), module)
    module.eval()
    lossf = loss_fn(task)
    res = {}
    with torch.no_grad():
        for s in ("train", "test"):
            x, y = ev.split(s)
            tot, corr = 0.0, 0.0
            for lo in range(0, x.shape[0], batch_size):
                out = module(x[lo: lo + batch_size])
                yb = y[lo: lo + batch_size]
                tot += lossf(out, yb).item() * yb.shape[0]  # host sync per batch
                if task == "classification":
                    corr += (out.argmax(-1) == yb).sum().item()
            res[f"{s}_loss"] = tot / x.shape[0]
            res[f"{s}_accuracy"] = corr / x.shape[0] if task == "classification" else math.nan
    return res
