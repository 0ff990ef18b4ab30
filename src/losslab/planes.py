"""Loss planes: a 2-D slice ``w(x, y) = origin + x * e1 + y * e2`` of weight space on a grid.

* :func:`plane_from_points` -- the plane through three flat vectors (blog construction:
  ``u = w2 - w1``, ``v = w3 - w1`` with ``v`` orthogonalised against ``u``). The basis is
  normalised, so ``(x, y)`` are Euclidean coordinates in weight space: ``w1`` sits at (0, 0),
  ``w2`` at (|u|, 0) and ``w3`` at (<w3 - w1, e1>, |v_perp|).
* :func:`random_plane` -- an optimum plus two Gaussian directions (the "radial well" slice of
  Fort & Jastrzebski, Figure 2), scaled to the optimum's norm or filter-wise (Li et al. 2018).
* :func:`grid_axes`, :func:`tile_ranges` -- a G x G grid with margins, split into tiles.
* :class:`GridEngine` / :func:`evaluate_grid` -- train/test loss and accuracy at many grid
  points. It preloads the data once, never syncs with the host per point, bounds its working
  memory by a budget, and uses the first-layer linearity trick: the first layer is linear in
  its weights, so its output at ``w(x, y)`` is ``z0 + x * z1 + y * z2`` for three outputs
  computed once per job. Optional ``torch.compile`` of the rest of the forward, and ``vmap``
  over many points for models without convolutions (see README "Loss planes" for timings).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from .flat import BN_BATCH, FlatModel
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


def layout_of(obj) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter (name, shape) list of a FlatModel, a Point, or a layout JSON string."""
    if isinstance(obj, FlatModel):
        return [(n, tuple(s)) for n, s in zip(obj.names, obj.shapes)]
    if hasattr(obj, "meta"):
        obj = obj.meta["layout"]
    return [(n, tuple(s)) for n, s in json.loads(obj)]


def _filter_normalise(d: torch.Tensor, w: torch.Tensor, layout) -> torch.Tensor:
    """Li et al. (2018): each filter (output row) of ``d`` gets the norm of the same filter of
    ``w``; biases and other 1-D parameters (BatchNorm) get zero."""
    out = torch.zeros_like(d)
    o = 0
    for _, shape in layout:
        k = math.prod(shape)
        if len(shape) >= 2:
            dd = d[o: o + k].reshape(shape[0], -1)
            ww = w[o: o + k].reshape(shape[0], -1)
            scale = ww.norm(dim=1, keepdim=True) / dd.norm(dim=1, keepdim=True).clamp_min(1e-12)
            out[o: o + k] = (dd * scale).reshape(-1)
        o += k
    if o != d.numel():
        raise ValueError(f"the layout has {o} parameters, the vector {d.numel()}")
    return out


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
        layout = layout_of(layout) if not isinstance(layout, list) else layout
        d1, d2 = _filter_normalise(d1, w, layout), _filter_normalise(d2, w, layout)
    else:
        raise ValueError(f"unknown direction normalization {normalization!r}; allowed: norm, unit, filter")
    return Plane(origin.float(), d1.to(origin.device), d2.to(origin.device), {"optimum": (0.0, 0.0)}, "random",
                 {"seed": int(seed), "normalization": normalization})


def curve_plane(path) -> Plane:
    """The plane of a curve: through its endpoints control[0], control[-1] and its middle bend
    control[(k + 2) // 2] (the only bend for k = 1). w1 sits at (0, 0) and w2 on the x axis."""
    from .curves import load_curve

    cv = load_curve(path)
    control = cv["control"].float()
    mid = control.shape[0] // 2
    plane = plane_from_points(control[0], control[-1], control[mid], names=("w1", "w2", "bend"))
    plane.kind = "curve"
    plane.meta.update(curve_kind=cv["kind"], bends=control.shape[0] - 2, bend_index=mid)
    return plane


def frame_epochs(n_epochs: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` epochs of 0..n_epochs, evenly spread, first and last kept."""
    return np.unique(np.round(np.linspace(0, n_epochs, min(max_frames, n_epochs + 1))).astype(int))


def curve_track(plane: Plane, final, epochs=None, t_marks=(), n_t: int = 61, max_frames: int | None = None) -> pd.DataFrame:
    """phi(t) of the final curve and of the saved epochs projected onto ``plane``.

    ``final``: a curve checkpoint; ``epochs``: its per-epoch file (``curves.save_curve_epochs``),
    of which at most ``max_frames`` epochs are kept. Columns: source (final | epoch), epoch (-1 for
    the final curve), t, x, y, residual (distance of phi(t) from the plane: 0 for a quadratic
    Bezier curve in its own plane), mark (t is one of ``t_marks``).
    """
    from . import curves

    ts = np.unique(np.concatenate([np.linspace(0, 1, n_t), np.asarray(list(t_marks), dtype=float)]))
    marks = set(np.round(np.asarray(list(t_marks), dtype=float), 9))
    cv = curves.load_curve(final)
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
        phi = curves.point(kind, control.double(), torch.tensor(ts, dtype=torch.float64))
        xy, res = plane.project(phi)
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
class _Injected(nn.Module):
    """Stands in for the first layer: its input is the stacked outputs ``[N, 3, ...]`` of the
    first layer under (origin, e1, e2); it returns ``z0 + coef[1] * z1 + coef[2] * z2``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("coef", torch.tensor([1.0, 0.0, 0.0]))

    def forward(self, z):
        return z[:, 0] + self.coef[1] * z[:, 1] + self.coef[2] * z[:, 2]


def _first_layer(module: nn.Module, x: torch.Tensor):
    """Name of the first parameterised module if it is a Linear/Conv fed the raw input."""
    order = []
    hooks = []

    def make(name):
        def hook(m, inp, out):
            order.append((name, m, inp[0] is x))
        return hook

    for name, m in module.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            hooks.append(m.register_forward_hook(make(name)))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    if not order:
        return None
    name, m, direct = order[0]
    if direct and isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and sum(1 for o in order if o[0] == name) == 1:
        return name
    return None


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def forward_flops(module: nn.Module, x1: torch.Tensor) -> float:
    """FLOPs (2 per multiply-add) of the convolutions and linear layers for one sample."""
    total = [0.0]

    def hook(m, inp, out):
        if isinstance(m, nn.modules.conv._ConvNd):
            k = math.prod(m.kernel_size) * (m.in_channels // m.groups)
            total[0] += 2.0 * out[0].numel() * k
        elif isinstance(m, nn.Linear):
            total[0] += 2.0 * m.in_features * m.out_features

    module = copy.deepcopy(module).cpu().eval()
    hs = [m.register_forward_hook(hook) for m in module.modules()]
    with torch.no_grad():
        module(x1)
    for h in hs:
        h.remove()
    return total[0]


def _activation_bytes_per_sample(module: nn.Module, x1: torch.Tensor) -> int:
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + (o.numel() * o.element_size() if torch.is_tensor(o) else 0)))
             for m in module.modules()]
    try:
        with torch.no_grad():
            module(x1)
    finally:
        for h in hooks:
            h.remove()
    return max(total[0], x1.numel() * x1.element_size())


@dataclass
class EngineOptions:
    mode: str = "auto"          # auto | loop | vmap
    first_layer: str = "auto"   # auto | on | off
    compile: str = "auto"       # off | on | auto (on when a job's work exceeds compile_min_gflop, always on CUDA)
    compile_min_gflop: float = 500.0
    memory_budget_mb: float = 2048
    bn_batch: int = BN_BATCH
    data_chunk: int = 0         # samples per forward; 0: 128 on CPU (cache-friendly), budget-bound on GPU

    @classmethod
    def from_dict(cls, d: dict | None, memory_budget_mb: float | None = None) -> "EngineOptions":
        d = dict(d or {})
        if memory_budget_mb is not None:
            d.setdefault("memory_budget_mb", memory_budget_mb)
        return cls(**{k: d[k] for k in ("mode", "first_layer", "compile", "compile_min_gflop", "memory_budget_mb", "bn_batch", "data_chunk") if k in d})


class GridEngine:
    """Loss and accuracy at many points of one plane on fixed, preloaded subsets.

    Points go through :meth:`evaluate` in any number; results stay on the device until the
    end of the call (one host transfer per call, none per point).
    """

    def __init__(self, fm: FlatModel, plane: Plane, ev, task: str, options: EngineOptions | None = None,
                 device: torch.device | str | None = None):
        self.opt = options or EngineOptions()
        self.task = task
        self.fm = fm
        self.device = torch.device(device) if device is not None else ev.train_x.device
        dev = self.device
        self.origin, self.e1, self.e2 = (t.to(dev, torch.float32) for t in (plane.origin, plane.e1, plane.e2))
        self.splits = {s: tuple(t.to(dev) for t in ev.split(s)) for s in ("train", "test")}
        self.bn_x = ev.bn_x.to(dev)
        self.has_bn = fm.has_bn
        net = copy.deepcopy(fm.module).to(dev).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.budget = float(self.opt.memory_budget_mb) * 2**20
        x_probe = self.splits["train"][0][:1]
        self.per_sample = _activation_bytes_per_sample(net, x_probe)

        has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in net.modules())
        mode = self.opt.mode
        if mode == "auto":
            mode = "vmap" if (not has_conv and not self.has_bn) else "loop"
        if mode == "vmap" and self.has_bn:
            raise ValueError("engine mode 'vmap' cannot recompute BatchNorm statistics per point; use 'loop'")
        if mode not in ("loop", "vmap"):
            raise ValueError(f"unknown engine mode {mode!r}; allowed: auto, loop, vmap")
        self.mode = mode

        # first-layer linearity trick (loop mode): "on" now, "auto" together with torch.compile
        # (measured: it only pays off once the combination is fused into the compiled forward)
        self.net = net
        self.first = None
        self._first_candidate = None
        self.param_names = list(fm.names)
        if mode == "loop" and self.opt.first_layer != "off":
            first = _first_layer(net, x_probe)
            if first is None and self.opt.first_layer == "on":
                raise ValueError("the model's first parameterised layer is not a Linear/Conv applied to the input")
            if first is not None:
                n_all = sum(t.shape[0] for t, _ in self.splits.values()) + (self.bn_x.shape[0] if self.has_bn else 0)
                with torch.no_grad():
                    out1 = net.get_submodule(first)(x_probe)
                need = 3 * n_all * out1.numel() * out1.element_size()
                if need > self.budget / 2:
                    if self.opt.first_layer == "on":
                        raise ValueError(f"first-layer outputs need {need / 2**20:.0f} MiB, over half the memory budget")
                    log.info("first-layer trick off: its outputs need %.0f MiB", need / 2**20)
                else:
                    self._first_candidate = first
            if self.opt.first_layer == "on":
                self._enable_first()
        self.flops_per_sample = forward_flops(fm.module, x_probe.cpu())
        self._eager = self._functional
        self._forward = self._eager
        self.compiled = False
        if self.opt.compile == "on":
            self._compile()
        n_data = max(t.shape[0] for t, _ in self.splits.values())
        # data chunk: activations of one chunk (x2 for temporaries) stay within half the budget
        self.data_chunk = max(1, min(n_data, int(self.budget / 2 / (2 * self.per_sample))))
        # measured on the CPU: minibatches of 128 run ~1.7x (eager) / ~1.2x (compiled) faster
        # than one 512-sample batch (the activations stay in cache)
        cap = self.opt.data_chunk or (128 if self.device.type == "cpu" else 0)
        if cap:
            self.data_chunk = min(self.data_chunk, cap)
        self.point_chunk = 1
        if mode == "vmap":
            n = max(t.shape[0] for t, _ in self.splits.values())
            per_point = 2 * self.per_sample * min(n, self.data_chunk) + 4 * fm.numel
            self.point_chunk = max(1, min(1024, int(self.budget / 2 / per_point)))

    # -- setup helpers --
    def _enable_first(self):
        if self.first or not self._first_candidate:
            return
        self.first = self._first_candidate
        self._setup_first()
        self.param_names = [n for n in self.fm.names if not n.startswith(self.first + ".")]

    def _setup_first(self):
        name = self.first
        layer = self.net.get_submodule(name)
        pnames = [n for n in self.fm.names if n.startswith(name + ".")]
        views = [self.fm.params(v) for v in (self.origin, self.e1, self.e2)]

        def outs(x):
            with torch.no_grad():
                return torch.stack([functional_call(layer, {n[len(name) + 1:]: p[n] for n in pnames}, (x,)) for p in views], 1)

        self.inputs = {s: outs(x) for s, (x, _) in self.splits.items()}
        self.bn_inputs = outs(self.bn_x) if self.has_bn else None
        _set_submodule(self.net, name, _Injected().to(self.device))
        self.coef_name = name + ".coef"

    def _functional(self, state, x):
        return functional_call(self.net, state, (x,))

    def _compile(self):
        if not self.compiled and self.mode == "loop":
            if self.opt.first_layer == "auto":
                self._enable_first()
            log.info("engine: torch.compile of the forward")
            self._forward = torch.compile(self._functional, dynamic=False)
            self.compiled = True

    def plan(self, n_points: int) -> None:
        """Compile (``compile: auto``) when the job is big enough to repay the compile time."""
        if self.opt.compile != "auto":
            return
        n_data = sum(t.shape[0] for t, _ in self.splits.values())
        gflop = n_points * n_data * self.flops_per_sample / 1e9
        if self.device.type == "cuda" or gflop >= self.opt.compile_min_gflop:
            self._compile()

    def describe(self) -> dict:
        return {"engine_mode": self.mode, "first_layer_trick": bool(self.first),
                "compiled": self.compiled,
                "data_chunk": self.data_chunk, "point_chunk": self.point_chunk}

    def bn_policy(self) -> str:
        return self.fm.bn_policy(self.bn_x.shape[0])

    # -- evaluation --
    def _state(self, vec: torch.Tensor, a, b) -> dict:
        p = self.fm.params(vec)
        state = {n: p[n] for n in self.param_names}
        if self.first:
            state[self.coef_name] = torch.stack([torch.ones_like(a), a, b]) if torch.is_tensor(a) else \
                torch.tensor([1.0, a, b], device=self.device)
        return state

    def _stats(self, out: torch.Tensor, y: torch.Tensor):
        """Summed loss and number correct of a chunk (device tensors, no sync)."""
        if self.task == "classification":
            loss = torch.nn.functional.cross_entropy(out, y, reduction="sum")
            corr = (out.argmax(-1) == y).sum().to(loss.dtype)
        else:
            loss = torch.nn.functional.mse_loss(out, y, reduction="sum") / max(1, y[0].numel())
            corr = torch.zeros((), device=out.device)
        return loss, corr

    def _bn_buffers(self, state: dict) -> dict:
        """Fresh BatchNorm statistics at one point, exactly as swa_utils.update_bn computes
        them (cumulative average over batches of ``bn_batch`` of the fixed subset)."""
        net = self.net
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(state[name])
            if self.first:
                net.get_submodule(self.first).coef.copy_(state[self.coef_name])
            data = self.bn_inputs if self.first else self.bn_x
            torch.optim.swa_utils.update_bn(list(data.split(self.opt.bn_batch)), net)
        net.eval()
        return {k: v.clone() for k, v in net.named_buffers() if not k.endswith(".coef")}

    @torch.no_grad()
    def evaluate(self, coords) -> dict[str, np.ndarray]:
        """Coordinates ``[P, 2]`` -> arrays ``{split}_loss`` and ``{split}_accuracy`` of length P."""
        coords = torch.as_tensor(np.asarray(coords, dtype=np.float64), dtype=torch.float32, device=self.device)
        n_pts = coords.shape[0]
        acc = torch.zeros(n_pts, 4, dtype=torch.float64, device=self.device)  # loss/corr train, loss/corr test
        if self.mode == "vmap":
            self._evaluate_vmap(coords, acc)
        else:
            self._evaluate_loop(coords, acc)
        acc = acc.cpu().numpy()  # the single host transfer
        res = {}
        for k, s in enumerate(("train", "test")):
            n = self.splits[s][0].shape[0]
            res[f"{s}_loss"] = acc[:, 2 * k] / n
            res[f"{s}_accuracy"] = acc[:, 2 * k + 1] / n if self.task == "classification" else np.full(n_pts, np.nan)
        return res

    def _evaluate_loop(self, coords, acc):
        basis = torch.stack([self.e1, self.e2])
        for i in range(coords.shape[0]):
            a, b = coords[i, 0], coords[i, 1]
            vec = self.origin + coords[i] @ basis
            state = self._state(vec, a, b)
            if self.has_bn:
                state.update(self._bn_buffers(state))
            for k, s in enumerate(("train", "test")):
                x, y = self.splits[s]
                data = self.inputs[s] if self.first else x
                for lo in range(0, x.shape[0], self.data_chunk):
                    out = self._forward(state, data[lo: lo + self.data_chunk])
                    l, c = self._stats(out, y[lo: lo + self.data_chunk])
                    acc[i, 2 * k] += l
                    acc[i, 2 * k + 1] += c

    def _evaluate_vmap(self, coords, acc):
        basis = torch.stack([self.e1, self.e2])
        net = self.net

        def one(vec, x):
            return functional_call(net, self.fm.params(vec), (x,))

        batched = torch.vmap(one, in_dims=(0, None))
        for lo in range(0, coords.shape[0], self.point_chunk):
            vecs = self.origin + coords[lo: lo + self.point_chunk] @ basis
            for k, s in enumerate(("train", "test")):
                x, y = self.splits[s]
                for dlo in range(0, x.shape[0], self.data_chunk):
                    out = batched(vecs, x[dlo: dlo + self.data_chunk])  # [P, n, K]
                    yy = y[dlo: dlo + self.data_chunk]
                    if self.task == "classification":
                        l = torch.nn.functional.cross_entropy(out.transpose(1, 2), yy.expand(out.shape[0], -1), reduction="none").sum(1)
                        c = (out.argmax(-1) == yy).sum(1).to(l.dtype)
                    else:
                        l = (out - yy).pow(2).flatten(1).sum(1) / max(1, yy[0].numel())
                        c = torch.zeros_like(l)
                    acc[lo: lo + out.shape[0], 2 * k] += l
                    acc[lo: lo + out.shape[0], 2 * k + 1] += c


def evaluate_grid(fm: FlatModel, plane: Plane, xs, ys, ev, task: str, options: EngineOptions | None = None,
                  device=None, engine: GridEngine | None = None, progress: bool = False) -> pd.DataFrame:
    """Evaluate the points ``(xs[k], ys[k])`` of a plane. Long-format table: one row per point
    and split with columns x, y, split, loss, accuracy, bn_policy (plus engine details).

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
        from tqdm import tqdm

        parts, step = [], max(1, len(coords) // 20)
        for lo in tqdm(range(0, len(coords), step), desc="grid points", unit="block"):
            parts.append(eng.evaluate(coords[lo: lo + step]))
        res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else eng.evaluate(coords)
    else:
        res = eng.evaluate(coords)
    dt = time.perf_counter() - t0
    log.info("evaluated %d points in %.2f s (%.1f points/s) with %s", len(coords), dt, len(coords) / max(dt, 1e-9), eng.describe())
    rows = []
    for s in ("train", "test"):
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
