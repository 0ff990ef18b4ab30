"""losslab as a library: the workflow's experiments on your own networks, in a notebook.

Every function takes networks as ``nn.Module`` objects (or state dicts, with ``model=`` giving the
architecture) and data as tensors ``(x, y)`` or a ``DataLoader`` (read once into tensors), and
returns pandas DataFrames with the columns of the workflow's tables (docs/columns.md), or a
module / tensor where that is the result. Each is a thin adapter over the functions the workflow
scripts call (``losslab.curves``, ``planes``, ``tunnels``, ``connectors``, ``align``,
``ensembles``, ``hessian``): module -> flat vector, data -> fixed evaluation tensors, then the
same code path. BatchNorm statistics are recomputed at every new point on a fixed batch of
training inputs (``bn_data``, default the training inputs), as in the workflow.

See docs/api.md for a quickstart and every signature.
"""
from __future__ import annotations

import copy
from typing import NamedTuple, Sequence, Union

import pandas as pd
import torch
from torch import nn

from . import align as _align
from . import connectors as _connectors
from . import curves as _curves
from . import ensembles as _ensembles
from . import hessian as _hessian
from . import planes as _planes
from . import tunnels as _tunnels
from .data import Dataset, EvalData
from .engine import EngineOptions
from .flat import FlatModel
from .io import Point

Network = Union[nn.Module, dict]
Data = Union[tuple, "torch.utils.data.DataLoader", None]

__all__ = ["interpolate", "plane", "fit_curve", "evaluate_path", "tunnel_width", "connector", "align",
           "align_lines", "hessian", "ensemble_eval", "vector", "network", "surface", "write_html", "write_vtk",
           "Landscape", "Curve"]


# ----- adapters: modules, state dicts and data -> flat vectors and fixed tensors -----------------------
def _template(nets: Sequence[Network], model: nn.Module | None) -> nn.Module:
    if model is not None:
        return model
    for n in nets:
        if isinstance(n, nn.Module):
            return n
    raise TypeError("networks given as state dicts need model=: an nn.Module of the same architecture")


def _point(fm: FlatModel, net: Network) -> Point:
    """A network as a weight-space point of ``fm``'s architecture (weights and buffers copied)."""
    if isinstance(net, nn.Module):
        module = net
    elif isinstance(net, dict):
        module = copy.deepcopy(fm.module)
        module.load_state_dict(net)
    else:
        raise TypeError(f"a network is an nn.Module or a state dict, got {type(net).__name__}")
    if [tuple(p.shape) for p in module.parameters()] != [tuple(s) for s in fm.shapes]:
        raise ValueError("the networks have different architectures (parameter shapes differ)")
    device = next(iter(fm.module.parameters())).device
    return Point(fm.flatten(module).clone().to(device), {k: v.to(device) for k, v in fm.buffers(module).items()},
                 {"layout": fm.layout})


def _setup(nets: Sequence[Network], model: nn.Module | None) -> tuple[FlatModel, list[Point]]:
    fm = FlatModel(copy.deepcopy(_template(nets, model)))
    return fm, [_point(fm, n) for n in nets]


def _tensors(data: Data, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of tensors, or every batch of a DataLoader concatenated (read once)."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif isinstance(data, torch.utils.data.DataLoader):
        xs, ys = zip(*((b[0], b[1]) for b in data))
        x, y = torch.cat(xs), torch.cat(ys)
    else:
        raise TypeError("data is a tuple (x, y) of tensors or a DataLoader yielding (x, y) batches")
    return torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)


def _task(y: torch.Tensor, task: str | None) -> str:
    if task is not None:
        return task
    return "regression" if y.is_floating_point() else "classification"


def _eval(fm: FlatModel, train: Data, test: Data, bn_data, task: str | None) -> tuple[EvalData, str, tuple]:
    """Fixed evaluation tensors of the workflow's kind (``EvalData``), the task and the splits."""
    device = next(iter(fm.module.parameters())).device
    trx, try_ = _tensors(train, device)
    tex, tey = _tensors(test, device) if test is not None else (trx[:0], try_[:0])
    bn_x = _tensors(bn_data, device)[0] if isinstance(bn_data, (tuple, list, torch.utils.data.DataLoader)) else (
        torch.as_tensor(bn_data).to(device) if bn_data is not None else trx)
    splits = ("train", "test") if test is not None else ("train",)
    return EvalData(trx, try_, tex, tey, bn_x), _task(try_, task), splits


def _both(fm: FlatModel, train: Data, test: Data, bn_data, task: str | None) -> tuple[EvalData, str, tuple]:
    """As :func:`_eval` for library functions that always evaluate both splits: without test
    data the train tensors stand in for them, and :func:`_splits` drops those rows again."""
    ev, task, splits = _eval(fm, train, test, bn_data, task)
    if test is None:
        ev = EvalData(ev.train_x, ev.train_y, ev.train_x, ev.train_y, ev.bn_x)
    return ev, task, splits


def _splits(df: pd.DataFrame, splits: tuple) -> pd.DataFrame:
    """Only the rows of ``splits``; without test data, ``n_test`` is 0 and test columns are NaN."""
    if "split" in df:
        df = df[df["split"].isin(splits)].reset_index(drop=True)
    if "test" not in splits:
        df = df.assign(**{c: 0 if c == "n_test" else float("nan")
                          for c in ("n_test", "test_loss", "test_accuracy") if c in df})
    return df


def vector(net: nn.Module) -> torch.Tensor:
    """The flat weight vector of a network (its parameters in ``named_parameters`` order)."""
    return FlatModel(net).flatten().clone()


def network(vec: torch.Tensor, like: nn.Module, bn_data: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``like`` with the weights of the flat vector ``vec``; BatchNorm statistics
    recomputed on the inputs ``bn_data`` when given (else ``like``'s own are kept)."""
    fm = FlatModel(like)
    module = copy.deepcopy(like)
    vec = vec.detach().to(next(iter(like.parameters())).device, next(iter(like.parameters())).dtype)
    buffers = fm.recompute_bn(vec, torch.as_tensor(bn_data).to(vec.device)) if bn_data is not None else None
    return fm.load_into(vec, module, buffers)


# ----- lines, planes, curves -----------------------------------------------------------------------
def interpolate(net_a: Network, net_b: Network, train: Data, test: Data = None, *, points: int = 11,
                model: nn.Module | None = None, bn_data=None, task: str | None = None,
                batch_size: int = 4096) -> pd.DataFrame:
    """The straight line ``(1 - t) a + t b`` at ``points`` evenly spaced t, BatchNorm recomputed at
    every point. Columns of the curves stage's ``along`` table (``path`` = ``line``, ``t``,
    ``split``, ``loss``, ``objective``, ``accuracy``, ``error``, ``weight_norm``, ``arc_length``,
    ``bn_policy``)."""
    fm, (a, b) = _setup([net_a, net_b], model)
    ev, task, splits = _eval(fm, train, test, bn_data, task)
    ts = torch.linspace(0, 1, int(points), dtype=a.flat.dtype)
    paths = {"line": _curves.line_points(a.flat, b.flat, ts.to(a.flat.device))}
    along, _ = _curves.evaluate_paths(fm, paths, ts, ev, task, batch_size=batch_size, splits=splits)
    return along.assign(**ev.sizes)


class Landscape(NamedTuple):
    """A plane's tables: ``grid`` (grid.parquet), ``points`` (points.parquet) and, for a curve's
    plane, ``track`` (track.parquet; else None)."""

    grid: pd.DataFrame
    points: pd.DataFrame
    track: pd.DataFrame | None = None


def plane(*nets: Network, train: Data, test: Data = None, curve=None, resolution: int = 21, margin: float = 0.2,
          extent: float = 1.0, normalization: str = "filter", seed: int = 0, t_marks: Sequence[float] = (0.25, 0.5, 0.75),
          model: nn.Module | None = None, bn_data=None, task: str | None = None, engine: dict | None = None,
          name: str = "plane") -> Landscape:
    """Loss and accuracy on a ``resolution`` x ``resolution`` grid of a plane in weight space:

    * three networks: the plane through them (``w1`` at (0, 0), ``w2`` on the x axis), grown by
      ``margin`` times its larger side;
    * one network: it and two random directions (``normalization``: ``filter``, per-filter as Li et
      al.; ``norm``, Gaussian scaled to the network's norm; ``unit``, Gaussian of unit length),
      ``[-extent, extent]^2``, directions drawn with ``seed``;
    * ``curve=`` (a :class:`Curve` from :func:`fit_curve`) and ``model=``: the plane through the
      curve's ends and middle bend, with the curve projected onto it (``track``, ``t_marks`` marked).

    Returns a :class:`Landscape` of the planes stage's tables. ``engine``: options of the
    evaluation engine (``losslab.engine.EngineOptions``)."""
    if curve is not None:
        if nets:
            raise TypeError("give either networks or curve=, not both")
        if model is None:
            raise TypeError("a curve's plane needs model=: an nn.Module of the curve's architecture")
        fm = FlatModel(copy.deepcopy(model))
        cv = _curve_dict(curve)
        p = _planes.make_plane("curve", [cv], ["w1", "w2", "bend"], margin, name=name)
        kind, labels = "curve", {}
    else:
        if len(nets) not in (1, 3):
            raise TypeError(f"plane() takes one network (random directions) or three, got {len(nets)}")
        fm, pts = _setup(nets, model)
        if len(nets) == 3:
            kind, labels = "points", ["w1", "w2", "w3"]
            p = _planes.make_plane(kind, [q.flat for q in pts], labels, margin, name=name)
        else:
            kind, labels = "random", ["optimum"]
            rnd = {"direction_seed": seed, "normalization": normalization, "extent": extent}
            p = _planes.make_plane(kind, [pts[0].flat.cpu()], labels, margin, rnd, fm, name)
    ev, task, splits = _eval(fm, train, test, bn_data, task)
    device = next(iter(fm.module.parameters())).device
    p.origin, p.e1, p.e2 = (v.to(device) for v in (p.origin, p.e1, p.e2))
    grid = _planes.whole_grid(fm, p, ev, task, resolution, EngineOptions.from_dict(engine), device, splits,
                              progress=False, plane=name)
    cfg = {"name": name, "kind": kind, "random": {"normalization": normalization} if kind == "random" else None}
    points = _planes.points_table(p, cfg)
    track = None
    if kind == "curve":
        track = _planes.curve_track(p, cv, t_marks=t_marks).assign(plane=name)
    return Landscape(grid, points, track)


class Curve(NamedTuple):
    """A trained curve: ``kind`` (bezier | chain), ``control`` points ``[k + 2, D]`` (the ends
    exactly the two networks), the training ``history`` (the curves stage's log table) and
    ``status`` (ok | diverged)."""

    kind: str
    control: torch.Tensor
    history: pd.DataFrame
    status: str = "ok"

    def at(self, t) -> torch.Tensor:
        """phi(t): a flat vector for a scalar t, ``[T, D]`` for a 1-D tensor of t."""
        return _curves.point(self.kind, self.control, t)


def _curve_dict(curve) -> dict:
    if isinstance(curve, Curve):
        return {"kind": curve.kind, "control": curve.control.detach().cpu(), "meta": {}}
    if isinstance(curve, dict):
        return curve
    return _curves.load_curve(curve)


def fit_curve(net_a: Network, net_b: Network, train: Data, *, kind: str = "bezier", bends: int = 1,
              epochs: int = 30, lr: float = 1e-3, optimizer: str = "adam", batch_size: int = 64, l2: float = 0.0,
              init: str = "linear", schedule: str = "constant", momentum: float = 0.9, seed: int = 0,
              model: nn.Module | None = None, task: str | None = None) -> Curve:
    """Train a low-loss curve between two fixed networks (Garipov et al.): ``kind`` ``bezier``
    (Bernstein polynomial of degree k + 1) or ``chain`` (polygonal), ``bends`` = k free control
    points, by minimising ``E_t Loss(phi(t))`` with one ``t ~ U[0, 1]`` per minibatch
    (``losslab.curves.fit_curve``, as the workflow's ``train_curve`` rule). ``init``: ``linear``
    (bends on the segment) or ``random`` (fresh initialisations of the network). Returns a
    :class:`Curve`."""
    fm, (a, b) = _setup([net_a, net_b], model)
    device = next(iter(fm.module.parameters())).device
    x, y = _tensors(train, device)
    task = _task(y, task)
    num_outputs = int(y.max()) + 1 if task == "classification" else (y.shape[1] if y.dim() > 1 else 1)
    ds = Dataset("data", x, y, x[:0], y[:0], task, num_outputs)
    ev = EvalData(x, y, x[:0], y[:0], x)
    settings = _curves.CurveSettings(init=init, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum,
                                     schedule=schedule, batch_size=batch_size, l2=l2)
    res = _curves.fit_curve(fm, settings, ds, ev, a, b, kind, bends, seed, device)
    return Curve(kind, res.control, res.history, res.status)


def evaluate_path(curve, train: Data, test: Data = None, *, model: nn.Module, points: int = 21, l2: float = 0.0,
                  bn_data=None, task: str | None = None,
                  batch_size: int = 4096) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A curve (a :class:`Curve`, a curve checkpoint or its path) and the straight line between its
    ends at ``points`` evenly spaced t, BatchNorm recomputed at every point: the curves stage's
    ``(along, ensemble, summary)`` tables (loss, accuracy, error along t; the ensemble of ``w1``
    with phi(t); barriers and means per path, split and metric)."""
    fm = FlatModel(copy.deepcopy(model))
    cv = _curve_dict(curve)
    ev, task, splits = _both(fm, train, test, bn_data, task)
    along, ens, summary = _curves.evaluate_curve(fm, cv["kind"], cv["control"], ev, task, points, l2, batch_size)
    return _splits(along, splits), _splits(ens, splits), _splits(summary, splits)


# ----- structure: tunnels, connectors, alignment, curvature, ensembles --------------------------------
def tunnel_width(net: Network, train: Data, test: Data = None, *, directions: int = 8,
                 normalization: str = "gaussian", r_max: float = 20.0, threshold: float = 1.0,
                 mode: str = "absolute", profile_points: int = 21, steps: int = 12, seed: int = 0,
                 model: nn.Module | None = None, bn_data=None, task: str | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Radial tunnel width (Fort & Jastrzebski): along ``directions`` random unit rays
    (``gaussian`` or ``filter`` normalised) from the network, the distance at which the train loss
    first exceeds ``threshold`` (``mode`` ``absolute``, or ``relative`` to the loss at the network),
    by a coarse profile of ``profile_points`` radii up to ``r_max`` and ``steps`` bisections.
    Returns the tunnel stage's ``(widths, profile)`` tables."""
    fm, (p,) = _setup([net], model)
    ev, task, splits = _both(fm, train, test, bn_data, task)
    widths, profile = _tunnels.probe_optimum(fm, p.flat, ev, task, directions=directions,
                                             normalization=normalization, r_max=r_max, threshold=threshold, mode=mode,
                                             profile_points=profile_points, steps=steps, direction_seed=seed,
                                             buffers=p.buffers or None)
    return _splits(widths.assign(**ev.sizes), splits), profile


def connector(net_a: Network, net_b: Network, train: Data, test: Data = None, *, segments: int = 8,
              d: int | None = 1000, steps: int = 200, lr: float = 0.01, optimizer: str = "adam",
              subspace: str = "shared", batch_size: int | None = 256, eval_points: int = 21, seed: int = 0,
              memory_budget_mb: float = 2048, model: nn.Module | None = None, bn_data=None,
              task: str | None = None, variant: str = "paper") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A normal-hyperplane connector (Fort & Jastrzebski, section 4.2): the straight line split into
    ``segments``, each interior node optimised in a ``d``-dimensional random subspace orthogonal to
    the line (``d=None``: the whole hyperplane) for ``steps`` steps on the training loss
    (``variant="sampled"``: the nodes trained together by the loss at random points of the path,
    ``steps`` per node in all, :func:`losslab.connectors.sampled_connector`). Returns
    the connectors stage's ``(nodes, path)`` tables: per node the loss on the line and after
    optimisation; line and connector evaluated at ``eval_points`` t (with agreement with the ends)."""
    fm, (a, b) = _setup([net_a, net_b], model)
    ev, task, splits = _both(fm, train, test, bn_data, task)
    loss = _connectors.NetworkLoss(fm, ev.train_x, ev.train_y, task, batch_size, seed)
    if variant not in _connectors.VARIANTS:
        raise ValueError(f"variant = {variant!r}; allowed: {', '.join(_connectors.VARIANTS)}")
    train_path = _connectors.sampled_connector if variant == "sampled" else _connectors.connector
    res = train_path(loss, a.flat, b.flat, segments=segments, d=d, steps=steps, lr=lr, optimizer=optimizer,
                     subspace=subspace, seed=seed, memory_budget_mb=memory_budget_mb)
    nodes = _connectors.connector_table(res, _connectors.NetworkLoss(fm, ev.train_x, ev.train_y, task))
    path = _connectors.evaluate_connector(fm, ev, task, res.t, res.points, eval_points)
    return nodes.assign(n_train=ev.train_x.shape[0], n_test=0), _splits(path, splits)


def align(net_a: Network, net_b: Network, data: Data | torch.Tensor, *, method: str = "weight_matching",
          seed: int = 0, max_iter: int = 100, model: nn.Module | None = None) -> nn.Module:
    """Network ``b`` permuted onto network ``a``: a copy of ``b`` (weights and BatchNorm buffers
    permuted) that computes the same function. ``method``: ``weight_matching`` (Git Re-Basin) or
    ``activation_matching`` (correlation of the units' activations on the inputs of ``data``: a
    tensor of inputs, ``(x, y)`` or a DataLoader). The permutation spec is derived from the module
    by ``torch.fx`` on a few inputs of ``data`` (``losslab.align.permutation_spec``)."""
    fm, (a, b) = _setup([net_a, net_b], model)
    x = data.to(a.flat.device) if torch.is_tensor(data) else _tensors(data, a.flat.device)[0]
    spec = _align.permutation_spec(fm.module, x[:8])
    found = _align.align(spec, fm, a, b, method, x, seed=seed, max_iter=max_iter)
    permuted = _align.permute_point(spec, fm, b, found.perms)
    module = copy.deepcopy(net_b if isinstance(net_b, nn.Module) else fm.module)
    return fm.load_into(permuted.flat, module, permuted.buffers or None)


def align_lines(net_a: Network, net_b: Network, train: Data, test: Data = None, *,
                methods: Sequence[str] = ("weight_matching", "activation_matching"), repair: bool = True,
                points: int = 11, seed: int = 0, max_iter: int = 100, model: nn.Module | None = None, bn_data=None,
                task: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The straight line from ``a`` to ``b``: naive, after each alignment ``method``, and with
    REPAIR (Jordan et al.) when ``repair``; BatchNorm recomputed at every point. Returns the align
    stage's ``(lines, barriers)`` tables."""
    fm, (a, b) = _setup([net_a, net_b], model)
    ev, task, splits = _both(fm, train, test, bn_data, task)
    spec = _align.permutation_spec(fm.module, ev.bn_x[:8])
    aligned = {}
    for m in methods:
        found = _align.align(spec, fm, a, b, m, ev.bn_x, seed=seed, max_iter=max_iter)
        aligned[m] = _align.permute(spec, fm, b.flat, None, found.perms)[0]
    alphas = torch.linspace(0, 1, int(points)).tolist()
    lines = _splits(_align.compare_lines(spec, fm, a, b, ev, task, alphas, aligned, repair=repair), splits)
    return lines, _align.barriers(lines)


def hessian(net: Network, data: Data, *, k: int = 10, threshold: float = 1.0, tol: float = 1e-3,
            min_steps: int | None = None, max_steps: int = 400, starts: int = 2, probes: int = 20,
            density_points: int = 200, sigma: float = 0.01, seed: int = 0, model: nn.Module | None = None,
            bn_data=None, task: str | None = None) -> dict[str, pd.DataFrame]:
    """The Hessian spectrum of the loss on ``data`` at the network, never forming the Hessian
    (``losslab.hessian.spectra_tables``, the spectra stage's code): Lanczos from ``starts`` random
    starts until the top ``k`` Ritz values converge (residual <= ``tol`` x value), the count of
    eigenvalues above ``threshold`` (the cap ``k`` raised while the count could reach it), a
    Hutchinson trace over ``probes`` Rademacher vectors with its standard error, and the SLQ density
    (Gaussian broadening ``sigma``, a fraction of the grid's span). BatchNorm statistics are
    recomputed at the network on ``bn_data`` (default: ``data``) and held fixed. Returns the spectra
    stage's tables ``{"counts", "eigenvalues", "density"}`` (docs/columns.md)."""
    fm, (p,) = _setup([net], model)
    x, y = _tensors(data, p.flat.device)
    bn_x = _tensors(bn_data, p.flat.device)[0] if bn_data is not None else x
    cfg = {"threshold": threshold, "top_k": k, "min_steps": min_steps or 2 * k, "tol": tol,
           "max_top_k": max(4 * k, k), "max_steps": max_steps, "starts": starts, "probes": probes, "seed": seed}
    return _hessian.spectra_tables(fm, [p.flat], [{"point": 0}], x, y, _task(y, task), cfg,
                                   bn_x if fm.has_bn else None, density_points, sigma)


def ensemble_eval(nets: Sequence[Network], train: Data, test: Data = None, *, sizes: Sequence[int] | None = None,
                  model: nn.Module | None = None, bn_data=None, task: str | None = None,
                  batch_size: int = 4096) -> pd.DataFrame:
    """Ensembles of the first n networks for each n in ``sizes`` (default 1..M): the ensembles
    stage's columns ``split``, ``n_members``, ``loss`` (NLL of the averaged probabilities),
    ``accuracy``, ``disagreement``, ``distance``, ``member_loss``, ``member_accuracy``. Each
    network keeps its own BatchNorm statistics."""
    fm, pts = _setup(list(nets), model)
    ev, task, splits = _both(fm, train, test, bn_data, task)
    members = torch.stack([q.flat for q in pts])
    buffers = [q.buffers for q in pts] if fm.has_bn else None
    df = _ensembles.growing(fm, members, ev, task, buffers, sizes, batch_size)
    return _splits(df.assign(method="given", **ev.sizes), splits)


# ----- pictures ------------------------------------------------------------------------------------
def surface(grid: pd.DataFrame, points: pd.DataFrame | None = None, track: pd.DataFrame | None = None,
            t_marks: Sequence[float] = (), title: str = ""):
    """An interactive 3-D plotly figure of a plane's tables (train and test side by side, contours,
    log-scale toggle, curve and points drawn on the surface); ``.show()`` it in a notebook."""
    from .figures.interactive import plane_figure

    return plane_figure(grid, points, track, t_marks=t_marks, title=title)


def write_html(landscape: Landscape, path, title: str = "") -> None:
    """The interactive surface of a :class:`Landscape` as one self-contained HTML file (works offline)."""
    from .figures.interactive import write_plane_html

    write_plane_html(landscape.grid, landscape.points, landscape.track, path, title=title)


def write_vtk(landscape: Landscape, grid_path, overlay_path=None) -> None:
    """A plane's grid as a VTK structured grid (``.vts``: every table column as point data) and,
    when ``overlay_path`` is given, its defining points and curve as poly data (``.vtp``), for
    ParaView (docs/paraview.md)."""
    from .export import write_grid_vts, write_overlay_vtp

    write_grid_vts(landscape.grid, grid_path)
    if overlay_path is not None:
        write_overlay_vtp(landscape.points, landscape.track, overlay_path, landscape.grid)

