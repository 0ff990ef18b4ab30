"""The evaluation engine: one model at many flat weight vectors on fixed, preloaded data.

:class:`Evaluator` returns, for every weight vector, the summed loss and the number of correct
predictions on chosen splits of an :class:`losslab.data.EvalData`. It works for any
``nn.Module`` and is fast on the small networks of landscape work, where the time goes into
per-layer overhead rather than arithmetic. Its levers, each chosen per job and reported by
:meth:`Evaluator.describe`:

* **lowering** (``lower``): a copy of the network in which a convolution on a small input is one
  dense matrix product (the matrix gathered from the weights through a precomputed index map, no
  FLOPs) where a short timing says that is faster, and the data in channels-last layout where that
  is faster (CPU max-pooling is several times faster on it). Only exact ``nn.Conv1d``/``nn.Conv2d``
  layers are lowered; every other layer runs as written.
* **first-layer trick** (``first_layer``): for points ``origin + coefs @ directions`` the first
  layer, linear in its weights, outputs ``z0 + sum_k coefs_k z_k``, computed once per job (where
  a timing says that beats running the layer).
* **many points per forward** (``mode``): ``torch.vmap`` over the points (the per-point loop is
  the fallback and the choice wherever it measures faster or vmap cannot run the model).
* **chunks** (``data_chunk``, ``point_chunk``): picked by a short on-line calibration within
  ``memory_budget_mb``, unless fixed.
* ``compile``: ``torch.compile`` of the forward for jobs whose calibrated eager time is long
  enough to repay the compile time (``compile_min_seconds``).

BatchNorm statistics are recomputed at every point exactly as ``torch.optim.swa_utils.update_bn``
does (it is called, one point at a time, on the fixed ``bn_x`` in batches of ``bn_batch``); the
evaluation passes then run with those per-point statistics.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .flat import FlatModel, bn_batch

log = logging.getLogger("losslab")

MODES = ("auto", "loop", "vmap")
SWITCHES = ("auto", "on", "off")
LOWER = ("auto", "on", "off")
DENSE_MAX_ELEMENTS = 2**22  # largest dense matrix a convolution is lowered to (16 MiB in fp32)
DENSE_MAX_FLOP_RATIO = 8.0  # ... and at most this many times the convolution's own FLOPs


@dataclass
class EngineOptions:
    """How the engine evaluates; the defaults choose every lever per job (see module doc)."""

    mode: str = "auto"          # auto | loop | vmap: points per forward (loop: one; vmap: point_chunk)
    first_layer: str = "auto"   # auto | on | off: first-layer trick (auto: where measured faster)
    lower: str = "auto"         # auto | on | off: dense convolutions, channels-last data (auto: where faster)
    compile: str = "auto"       # auto | on | off: torch.compile (auto: jobs of >= compile_min_seconds)
    compile_min_seconds: float = 300.0  # calibrated eager time of a job from which compiling pays off
    memory_budget_mb: float = 2048
    bn_batch: int = field(default_factory=bn_batch)
    data_chunk: int = 0         # samples per forward; 0: calibrated
    point_chunk: int = 0        # points per forward in vmap mode; 0: calibrated

    KEYS = ("mode", "first_layer", "lower", "compile", "compile_min_seconds", "memory_budget_mb", "bn_batch",
            "data_chunk", "point_chunk")

    def __post_init__(self):
        for key, allowed in (("mode", MODES), ("first_layer", SWITCHES), ("lower", LOWER), ("compile", SWITCHES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"engine option {key} = {getattr(self, key)!r}; allowed: {', '.join(allowed)}")
        for key in ("data_chunk", "point_chunk"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"engine option {key} = {getattr(self, key)}; it must be >= 0 (0: calibrated)")
        if not self.memory_budget_mb > 0:
            raise ValueError(f"engine option memory_budget_mb = {self.memory_budget_mb}; it must be > 0")

    @classmethod
    def from_dict(cls, d: dict | None, memory_budget_mb: float | None = None) -> EngineOptions:
        """Options from a config block (``planes.engine``); unknown keys are an error."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"unknown engine option(s) {', '.join(unknown)}; allowed: {', '.join(cls.KEYS)}")
        if memory_budget_mb is not None:
            d.setdefault("memory_budget_mb", memory_budget_mb)
        return cls(**d)


# ----- model inspection ------------------------------------------------------------------------
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
    try:
        with torch.no_grad():
            module(x1.cpu())
    finally:
        for h in hs:
            h.remove()
    return total[0]


def _trace(net: nn.Module, x: torch.Tensor, leaves: bool = False) -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """(name, module, input, output) of every module that owns parameters (``leaves``: of every
    module without children), in call order."""
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: calls.append((name, m, i[0] if i else None, o)))
             for name, m in net.named_modules()
             if ((not any(True for _ in m.children())) if leaves else any(True for _ in m.parameters(recurse=False)))]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _activation_bytes_per_sample(module: nn.Module, x1: torch.Tensor) -> int:
    """Bytes of all layer outputs for one sample (an upper bound of the live activations)."""
    outs = [o for *_, o in _trace(module, x1, leaves=True) if torch.is_tensor(o)]
    return max(sum(o.numel() * o.element_size() for o in outs), x1.numel() * x1.element_size())


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _channels_last(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``x`` stored with dimension ``dim`` (the channels) innermost; the same logical tensor.
    Convolutions given channels-last inputs and weights return channels-last outputs."""
    if x.dim() - dim < 3:
        return x
    return x.movedim(dim, -1).contiguous().movedim(-1, dim)


# ----- lowered layers --------------------------------------------------------------------------
class _DenseConv(nn.Module):
    """A ``Conv1d``/``Conv2d`` on one input shape as a single dense matrix product.

    Keeps the replaced layer's parameters (same names and shapes), so the model's parameter
    layout is unchanged. :meth:`expand` turns (batched) weights and bias into the dense matrix
    ``[n_in, n_out]`` and the full bias ``[n_out]``; the engine passes them as ``dense`` and
    ``dense_bias`` (built once per point, shared by all data chunks). Rows follow the input in
    channels-last order, columns the output in channels-last order, so the output is written in
    channels-last memory (logically ``[N, C_out, ...]`` as the convolution's).
    """

    def __init__(self, conv: nn.Module, in_shape: tuple[int, ...]):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.register_buffer("dense", torch.empty(0), persistent=False)
        self.register_buffer("dense_bias", torch.empty(0), persistent=False)
        self.index, self.out_shape = _dense_index(conv, in_shape)  # [n_in, n_out] (0: no weight), (*spatial, C_out)
        self.n_pos = math.prod(self.out_shape[:-1])

    def expand(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense matrix ``[..., n_in, n_out]`` and full bias ``[..., n_out]`` of weights with any
        leading batch dimensions (the weight's own shape last)."""
        lead = weight.shape[: weight.dim() - self.weight.dim()]
        w = weight.reshape(*lead, -1)
        padded = torch.cat([w.new_zeros(*lead, 1), w], -1)
        dense = padded[..., self.index.to(w.device).reshape(-1)].reshape(*lead, *self.index.shape)
        c_out = self.out_shape[-1]
        b = bias if bias is not None else w.new_zeros(*lead, c_out)
        full = b.unsqueeze(-2).expand(*lead, self.n_pos, c_out).reshape(*lead, self.n_pos * c_out)
        return dense, full

    def forward(self, x):
        n = x.shape[0]
        flat = x.movedim(1, -1).reshape(n, -1)  # a view when x is channels-last
        out = torch.addmm(self.dense_bias, flat, self.dense)
        return out.view(n, *self.out_shape).movedim(-1, 1)


def _dense_index(conv: nn.Module, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Index map of a convolution on inputs of shape ``in_shape`` (C, *spatial): entry
    (i, o) is 1 + the flat weight index connecting channels-last input element i to
    channels-last output element o, or 0 where none does. Built with ``F.unfold`` on an image of
    input indices, so stride, padding, dilation and groups are the layer's own."""
    two_d = isinstance(conv, nn.Conv2d)
    c_in = in_shape[0]
    spatial = tuple(in_shape[1:]) if two_d else (1, in_shape[1])
    k = tuple(conv.kernel_size) if two_d else (1, conv.kernel_size[0])
    pad = tuple(conv.padding) if two_d else (0, conv.padding[0])
    stride = tuple(conv.stride) if two_d else (1, conv.stride[0])
    dil = tuple(conv.dilation) if two_d else (1, conv.dilation[0])
    h, w = spatial
    # channels-last flat index (+1) of every input element, laid out as an NCHW image
    img = torch.arange(1, c_in * h * w + 1, dtype=torch.float64).reshape(1, h, w, c_in).permute(0, 3, 1, 2)
    taps = F.unfold(img, k, dil, pad, stride).round().long()[0]  # [c_in * kk, L]
    n_pos = taps.shape[1]
    c_out, groups = conv.out_channels, conv.groups
    cg, kk = c_in // groups, k[0] * k[1]
    co = torch.arange(c_out)
    rows = taps.reshape(groups, cg * kk, n_pos)[co // (c_out // groups)]  # [c_out, cg * kk, L]
    widx = co[:, None] * (cg * kk) + torch.arange(cg * kk)[None]  # [c_out, cg * kk]
    cols = torch.arange(n_pos)[None, None, :] * c_out + co[:, None, None]  # [c_out, 1, L]
    index = torch.zeros(c_in * h * w + 1, n_pos * c_out, dtype=torch.long)
    index[rows, cols.expand_as(rows)] = (widx + 1)[..., None].expand_as(rows)
    oh = (h + 2 * pad[0] - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
    ow = n_pos // oh
    out_shape = (oh, ow, c_out) if two_d else (ow, c_out)
    return index[1:], out_shape  # row 0 collected the padding taps


def _lowerable(m: nn.Module, x: torch.Tensor) -> bool:
    """An exact Conv1d/Conv2d with zero padding whose dense matrix is small enough."""
    if type(m) not in (nn.Conv1d, nn.Conv2d) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return False
    if x is None or x.dim() != m.weight.dim():
        return False
    n_in = x[0].numel()
    with torch.no_grad():
        n_out = m(x[:1])[0].numel()
    direct = n_out * m.weight[0].numel()  # multiply-adds per sample
    return n_in * n_out <= DENSE_MAX_ELEMENTS and n_in * n_out <= DENSE_MAX_FLOP_RATIO * direct


class _Injected(nn.Module):
    """Stands in for the first layer of points ``origin + coefs @ directions``. Its input holds
    the first layer's outputs under the origin and each direction, ``[N, m + 1, ...]`` (channel
    dimension last when ``channels_last``; stored direction-major, so each direction's block is
    contiguous); it returns ``z0 + sum_k coef[k] z_k`` (one matrix-vector product, which reads
    every input once), the layer's output at the point."""

    def __init__(self, m: int, channels_last: bool):
        super().__init__()
        self.register_buffer("coef", torch.zeros(m + 1), persistent=False)
        self.channels_last = channels_last

    def forward(self, z):
        zk = z.transpose(0, 1)
        out = (self.coef @ zk.reshape(zk.shape[0], -1)).view(zk.shape[1:])
        return out.movedim(-1, 1) if self.channels_last else out


class _Bound(nn.Module):
    """A network at one fixed state as a plain module (``swa_utils.update_bn`` calls model(x))."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.state: dict = {}

    def forward(self, x):
        return functional_call(self.net, self.state, (x,))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, reps: int = 3) -> float:
    """Best wall time in seconds of ``fn`` over ``reps`` runs after one warm-up."""
    return _timed_pair(fn, None, device, reps)[0]


def _timed_pair(fn_a, fn_b, device: torch.device, reps: int = 3) -> tuple[float, float]:
    """Best wall times of ``fn_a`` and ``fn_b`` (None: not timed, inf), their runs interleaved
    so that a change in the machine's load hits both alike."""
    best = [math.inf, math.inf]
    for f in (fn_a, fn_b):
        if f is not None:
            f()
    for _ in range(reps):
        for k, f in enumerate((fn_a, fn_b)):
            if f is not None:
                _sync(device)
                t = time.perf_counter()
                f()
                _sync(device)
                best[k] = min(best[k], time.perf_counter() - t)
    return best[0], best[1]


def _per_sample(out: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss and correctness ``[P, n]`` of outputs ``[P, n, ...]`` against ``y`` ``[n, ...]``
    (cross-entropy and argmax hits; for regression the squared error averaged over outputs)."""
    if task == "classification":
        logp = out.log_softmax(-1)
        yy = y.expand(out.shape[0], -1)
        loss = -logp.gather(-1, yy[..., None])[..., 0]
        return loss, (out.argmax(-1) == yy).to(loss.dtype)
    err = (out - y).pow(2)
    loss = err.reshape(*err.shape[:2], -1).mean(-1)
    return loss, torch.zeros_like(loss)


# ----- the evaluator -----------------------------------------------------------------------------
class Evaluator:
    """Summed loss and number correct of one model at many flat weight vectors.

    ``ev`` is an :class:`losslab.data.EvalData` (splits ``train`` and ``test``, and ``bn_x``);
    an empty split is allowed. ``basis = (origin [D], directions [m, D])`` lets points also be
    given as coefficients (:meth:`evaluate_coefs`), which enables the first-layer trick.
    ``buffers`` (a checkpoint's buffers, optional; BatchNorm statistics are recomputed anyway) are
    loaded into the engine's own copy of the network: the module of ``fm`` is never modified.
    """

    def __init__(self, fm: FlatModel, ev, task: str, options: EngineOptions | None = None,
                 device: torch.device | str | None = None, basis: tuple[torch.Tensor, torch.Tensor] | None = None,
                 buffers: dict | None = None):
        if task not in ("classification", "regression"):
            raise ValueError(f"unknown task {task!r}; allowed: classification, regression")
        self.opt = options or EngineOptions()
        self.task = task
        self.fm = fm
        self.device = dev = torch.device(device) if device is not None else ev.train_x.device
        self.splits = {s: tuple(t.to(dev) for t in ev.split(s)) for s in ("train", "test")}
        self.bn_x = ev.bn_x.to(dev)
        self.has_bn = fm.has_bn
        self.budget = float(self.opt.memory_budget_mb) * 2**20
        self.origin = self.dirs = None
        if basis is not None:
            self.origin = basis[0].to(dev, torch.float32).reshape(fm.numel)
            self.dirs = basis[1].to(dev, torch.float32).reshape(-1, fm.numel)
        net = copy.deepcopy(fm.module).to(dev).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        if buffers:
            own = dict(net.named_buffers())
            with torch.no_grad():
                for k, v in buffers.items():
                    own[k].copy_(v)
        self.n_data = sum(x.shape[0] for x, _ in self.splits.values())
        if self.n_data == 0:
            raise ValueError("the evaluation subsets are empty")
        x_all = torch.cat([self.splits["train"][0], self.splits["test"][0]])
        self.x_probe = x_all[: min(256, self.n_data)]
        self.per_sample = _activation_bytes_per_sample(net, self.x_probe[:1])
        self.flops_per_sample = forward_flops(fm.module, self.x_probe[:1])
        self.net = net
        self.channels_last = False
        self.dense: list[str] = []
        self.cl_weights: list[str] = []
        self.first = None
        self.net_first = None
        self.timings: dict[str, float] = {}  # seconds of the lowering and trick choices, for the log
        first = self._find_first() if self.origin is not None and self.opt.first_layer != "off" else None
        if self.opt.lower != "off":
            self._lower()
        if first is not None:
            self._setup_first(*first)
        self.mode = "loop" if self.opt.mode == "auto" else self.opt.mode
        self.vmap_error = ""
        self._checked: set = set()
        self.data_chunk = self._fit_chunk(self.opt.data_chunk or self.n_data, 1)
        self.point_chunk = 1 if self.mode == "loop" else (self.opt.point_chunk or self._max_points(self.data_chunk))
        self.calibrated = False
        self.calibration: dict[str, float] = {}
        self.planned_points = 0
        self.compiled = False
        self._forwards = {}
        self._data_cache: dict = {}

    # -- setup ------------------------------------------------------------------------------------
    def _find_first(self):
        """(name, layer) of the first parameterised layer when the first-layer trick applies: an
        exact Linear/Conv fed the raw input, called once, whose outputs under the basis fit in
        half the memory budget, and (``first_layer: auto``) whose fan-in exceeds the basis size, so
        that the trick can save multiply-adds. None otherwise (an error for ``first_layer: on``)."""
        calls = _trace(self.net, self.x_probe)
        leaves = _trace(self.net, self.x_probe, leaves=True)
        why = ""
        if not calls:
            why = "the model has no parameterised layer"
        else:
            name, layer, inp, out = calls[0]
            if not (inp is self.x_probe and leaves[0][0] == name  # the first layer run, on the input itself
                    and type(layer) in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
                    and sum(1 for c in calls if c[0] == name) == 1):
                why = "the first parameterised layer is not a Linear/Conv applied once to the input"
        if not why:
            m = self.dirs.shape[0] + 1
            n_all = self.n_data + (self.bn_x.shape[0] if self.has_bn else 0)
            need = m * n_all * out[0].numel() * out.element_size()
            if need > self.budget / 2:
                why = f"its outputs need {need / 2**20:.0f} MiB, over half of memory_budget_mb ({self.opt.memory_budget_mb:g})"
            elif self.opt.first_layer == "auto" and layer.weight[0].numel() <= m:
                return None  # fan-in not above the basis size: nothing to save
        if why:
            if self.opt.first_layer == "on":
                raise ValueError(f"engine option first_layer: on, but {why}")
            log.info("first-layer trick off: %s", why)
            return None
        return name, copy.deepcopy(layer)

    def _lower(self):
        """Channels-last data and convolution weights, then dense convolutions: with ``lower:
        auto`` each where a timing on the probe batch says it is faster (the layout by a whole
        forward, each convolution by itself in the chosen layout); with ``lower: on`` always."""
        timed = self.opt.lower == "auto"
        x = self.x_probe
        if x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in self.net.modules()):
            cl_net = copy.deepcopy(self.net).to(memory_format=torch.channels_last)
            x_cl = _channels_last(x)
            if timed:
                with torch.no_grad():
                    t_std, t_cl = _timed_pair(lambda: self.net(x), lambda: cl_net(x_cl), self.device)
                self.timings.update(forward_contiguous=t_std, forward_channels_last=t_cl)
            if not timed or t_cl < t_std:
                self.channels_last = True
                self.net = cl_net
                x = x_cl
        calls = _trace(self.net, x)
        for name, m, inp, _ in calls:
            if not _lowerable(m, inp) or sum(1 for c in calls if c[0] == name) > 1:  # one input shape only
                continue
            dense = _DenseConv(m, tuple(inp.shape[1:]))
            dense.index = dense.index.to(self.device)
            if timed:
                with torch.no_grad():
                    dense.dense, dense.dense_bias = dense.expand(m.weight, m.bias)
                    t_conv, t_dense = _timed_pair(lambda m=m, inp=inp: m(inp), lambda d=dense, inp=inp: d(inp), self.device)
                self.timings.update({f"{name}:conv": t_conv, f"{name}:dense": t_dense})
            if not timed or t_dense < t_conv:
                _set_submodule(self.net, name, dense)
                self.dense.append(name)
        if self.channels_last:
            self.cl_weights = [f"{n}.weight" for n, m in self.net.named_modules() if isinstance(m, nn.Conv2d)]
        log.info("engine lowering: channels_last=%s, dense convolutions: %s (timings, ms: %s)", self.channels_last,
                 ", ".join(self.dense) or "none", {k: round(v * 1e3, 3) for k, v in self.timings.items()})

    def _setup_first(self, name: str, layer: nn.Module):
        """Replace the first layer by :class:`_Injected` in a second copy of the network and
        precompute its inputs: the layer's outputs under the origin and every direction. With
        ``first_layer: auto`` only where the combination measures faster than the layer itself
        on the probe batch: it saves multiply-adds but streams m + 1 stored outputs from memory
        per point, which loses against a fast convolution on a big input."""
        pnames = [n for n in self.fm.names if n.startswith(name + ".")]
        views = [self.fm.params(v) for v in torch.cat([self.origin[None], self.dirs])]
        cl = self.channels_last

        def outs(x):
            with torch.no_grad():
                zs = [functional_call(layer, {n[len(name) + 1:]: p[n] for n in pnames}, (x,)) for p in views]
                return torch.stack([z.movedim(1, -1) if cl else z for z in zs]).transpose(0, 1)  # [N, m+1, ...], direction-major

        injected = _Injected(self.dirs.shape[0], cl).to(self.device)
        if self.opt.first_layer == "auto":
            own = self.net.get_submodule(name)  # the layer as the engine would run it (lowered, in layout)
            x, z = self._inputs(self.x_probe, False), outs(self.x_probe)
            injected.coef.fill_(0.5)
            with torch.no_grad():
                if isinstance(own, _DenseConv):
                    own.dense, own.dense_bias = own.expand(own.weight, own.bias)
                t_layer, t_trick = _timed_pair(lambda: own(x), lambda: injected(z), self.device)
            self.timings.update(first_layer=t_layer, first_layer_trick=t_trick)
            if t_trick >= t_layer:
                log.info("first-layer trick off: the layer itself is faster (%.2f ms vs %.2f ms on %d samples)",
                         t_layer * 1e3, t_trick * 1e3, x.shape[0])
                return
        self.first = name
        self.first_outputs = outs
        self.net_first = copy.deepcopy(self.net)
        _set_submodule(self.net_first, name, injected)

    def _fit_chunk(self, chunk: int, points: int) -> int:
        """``chunk`` samples, fewer where ``points`` points' activations (x2 for temporaries)
        would exceed half the memory budget."""
        return max(1, min(chunk, self.n_data, int(self.budget / 2 / (2 * self.per_sample * points))))

    def _max_points(self, chunk: int) -> int:
        """Most points per forward whose activations and parameters fit in half the budget."""
        dense = sum(self.net.get_submodule(n).index.numel() * 4 for n in self.dense)
        per_point = 2 * self.per_sample * chunk + 4 * self.fm.numel + dense
        return max(1, min(1024, int(self.budget / 2 / per_point)))

    # -- reporting ----------------------------------------------------------------------------------
    def describe(self) -> dict:
        """Which path ran: mode, points and samples per forward, lowering, trick, compile."""
        return {"engine_mode": self.mode, "point_chunk": self.point_chunk, "data_chunk": self.data_chunk,
                "channels_last": self.channels_last, "dense_layers": list(self.dense),
                "first_layer_trick": bool(self.first), "compiled": self.compiled, "calibrated": self.calibrated,
                **({"vmap_error": self.vmap_error} if self.vmap_error else {})}

    def bn_policy(self) -> str:
        return self.fm.bn_policy(self.bn_x.shape[0])

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate_vectors(self, vecs: torch.Tensor, splits=("train", "test")) -> dict[str, dict[str, torch.Tensor]]:
        """Flat weight vectors ``[P, D]`` -> ``{split: {"loss": [P], "correct": [P]}}``: the loss
        summed over the split's samples and the number of correct predictions (zero for
        regression), float64 tensors on the engine's device."""
        vecs = torch.as_tensor(vecs).to(self.device, torch.float32)
        if vecs.dim() != 2 or vecs.shape[1] != self.fm.numel:
            raise ValueError(f"weight vectors must have shape [P, {self.fm.numel}], got {tuple(vecs.shape)}")
        acc = self._sums(vecs.shape[0], lambda lo, hi: self.fm.params(vecs[lo:hi]), tuple(splits), False)
        return {s: {"loss": acc[:, 0, k], "correct": acc[:, 1, k]} for k, s in enumerate(splits)}

    def evaluate_coefs(self, coefs, splits=("train", "test")) -> dict[str, dict[str, torch.Tensor]]:
        """As :meth:`evaluate_vectors` for the points ``origin + coefs @ directions`` of the
        basis (``coefs`` ``[P, m]``); uses the first-layer trick when it is on."""
        if self.origin is None:
            raise ValueError("this engine has no basis; use evaluate_vectors")
        m = self.dirs.shape[0]
        coefs = torch.as_tensor(coefs, dtype=torch.float32, device=self.device).reshape(-1, m)
        first = self.first is not None

        def state(lo, hi):
            c = coefs[lo:hi]
            st = self.fm.params(self.origin + c @ self.dirs)
            if first:
                st[self.first + ".coef"] = torch.cat([torch.ones_like(c[:, :1]), c], 1)
            return st

        acc = self._sums(coefs.shape[0], state, tuple(splits), first)
        return {s: {"loss": acc[:, 0, k], "correct": acc[:, 1, k]} for k, s in enumerate(splits)}

    def _data(self, splits: tuple, first: bool):
        """Inputs (in the engine's layout, or the first layer's outputs), labels and the split
        index of every sample of ``splits`` concatenated; built once per job."""
        key = (splits, first)
        if key not in self._data_cache:
            unknown = [s for s in splits if s not in self.splits]
            if unknown or not splits:
                raise ValueError(f"unknown split(s) {unknown or splits}; allowed: train, test")
            x = torch.cat([self.splits[s][0] for s in splits])
            y = torch.cat([self.splits[s][1] for s in splits])
            seg = torch.cat([torch.full((self.splits[s][0].shape[0],), k, dtype=torch.long, device=self.device)
                             for k, s in enumerate(splits)])
            self._data_cache[key] = (self._inputs(x, first), y, seg)
        return self._data_cache[key]

    def _inputs(self, x: torch.Tensor, first: bool) -> torch.Tensor:
        if first:
            return self.first_outputs(x)
        return _channels_last(x) if self.channels_last else x

    def _net(self, first: bool) -> nn.Module:
        return self.net_first if first else self.net

    def _prepare(self, state: dict, first: bool) -> None:
        """Add the dense matrices of the lowered convolutions and lay out the weights of the
        other convolutions channels-last where the data is (once per point chunk)."""
        for name in self.cl_weights:
            if name in state:
                state[name] = _channels_last(state[name], state[name].dim() - 3)
        for name in self.dense:
            if first and name == self.first:
                continue
            mod = self.net.get_submodule(name)
            state[name + ".dense"], state[name + ".dense_bias"] = mod.expand(state[name + ".weight"],
                                                                            state.get(name + ".bias"))

    def _bn_state(self, state: dict, p: int, first: bool) -> dict:
        """BatchNorm statistics ``[p, ...]`` of every point of a batched state, each exactly as
        ``swa_utils.update_bn`` computes them on ``bn_x`` in batches of ``bn_batch``."""
        key = ("bn", first)
        if key not in self._data_cache:
            bound = _Bound(self._net(first)).eval()
            self._data_cache[key] = (bound, list(self._inputs(self.bn_x, first).split(self.opt.bn_batch)))
        bound, batches = self._data_cache[key]
        names = [f"{n}.{b}" for n, m in bound.net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for b, _ in m.named_buffers(recurse=False)]
        own = dict(bound.net.named_buffers())
        per_point = []
        for i in range(p):
            bound.state = {k: v[i] for k, v in state.items()}
            torch.optim.swa_utils.update_bn(batches, bound)
            per_point.append([own[n].clone() for n in names])
        bound.state = {}
        return {n: torch.stack([b[j] for b in per_point]) for j, n in enumerate(names)}

    def _forward(self, first: bool, batched: bool, eager: bool = False):
        """``(state, x) -> outputs`` at one point, or at many (``batched``: vmap over the state's
        leading axis); compiled when the engine compiles, unless ``eager``."""
        key = (first, batched, eager or not self.compiled)
        if key not in self._forwards:
            net = self._net(first)

            def one(state, x):
                return functional_call(net, state, (x,))

            fn = torch.vmap(one, in_dims=(0, None)) if batched else one
            self._forwards[key] = fn if key[2] else self._compiled(fn, key)
        return self._forwards[key]

    def _compiled(self, fn, key):
        """``torch.compile(fn)``; should compiling fail (at its first call), the engine logs why
        and goes on with ``fn`` itself, so a model the compiler cannot handle still runs."""
        compiled = torch.compile(fn)

        def run(state, x):
            try:
                return compiled(state, x)
            except Exception as exc:  # a compiler error: the eager forward computes the same values
                log.warning("engine: torch.compile failed (%s: %s); running eagerly", type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
                self.compiled = False
                self._forwards[key] = fn
                return fn(state, x)

        return run

    def _step(self, fwd, state: dict, x, y, seg, acc: torch.Tensor, batched: bool) -> None:
        """One forward on a data chunk; adds its summed loss and correct count per split to
        ``acc`` ``[P, 2, S]`` (device tensors, no host sync)."""
        out = fwd(state, x)
        loss, corr = _per_sample(out if batched else out[None], y, self.task)
        acc[:, 0].index_add_(1, seg, loss.double())
        acc[:, 1].index_add_(1, seg, corr.double())

    def _vmap_runs(self, make_state, splits: tuple, first: bool) -> bool:
        """Whether vmap over points runs this model (tried once on two points and two samples);
        the reason is kept in ``vmap_error``. A model with an op that has no batching rule or with
        data-dependent control flow cannot; ``mode: vmap`` then is an error."""
        if "vmap" not in self._checked:
            x = self._data(splits, first)[0]
            state = {k: v.expand(2, *v.shape[1:]) for k, v in make_state(0, 1).items()}
            self._prepare(state, first)
            if self.has_bn:
                bn = self._bn_state({k: v[:1] for k, v in state.items()}, 1, first)
                state.update({k: v.expand(2, *v.shape[1:]) for k, v in bn.items()})
            try:
                self._forward(first, True, eager=True)(state, x[:2])
            except Exception as exc:  # no batching rule, data-dependent control flow, ...
                self.vmap_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self._checked.add("vmap")
        if self.vmap_error and self.opt.mode == "vmap":
            raise ValueError(f"engine mode vmap cannot run this model ({self.vmap_error}); use mode loop or auto")
        return not self.vmap_error

    @torch.no_grad()
    def _sums(self, n_pts: int, make_state, splits: tuple, first: bool) -> torch.Tensor:
        """``[n_pts, 2, len(splits)]`` float64: summed loss and correct count per point and split.
        ``make_state(lo, hi)`` gives the parameters of points lo..hi-1 with a leading point axis."""
        x, y, seg = self._data(splits, first)
        if self.opt.mode == "vmap":
            self._vmap_runs(make_state, splits, first)
        if not self.calibrated and (self.opt.compile == "auto" or not self.opt.data_chunk
                                    or (self.opt.mode != "loop" and not self.opt.point_chunk)):
            self._calibrate(max(n_pts, self.planned_points), make_state, splits, first)
        acc = torch.zeros(n_pts, 2, len(splits), dtype=torch.float64, device=self.device)
        batched = self.mode == "vmap"
        step = self.point_chunk if batched else 1
        fwd = self._forward(first, batched)
        for lo in range(0, n_pts, step):
            hi = min(n_pts, lo + step)
            state = make_state(lo, hi)
            self._prepare(state, first)
            if self.has_bn:
                state.update(self._bn_state(state, hi - lo, first))
            if not batched:
                state = {k: v[0] for k, v in state.items()}
            for dlo in range(0, x.shape[0], self.data_chunk):
                dhi = min(x.shape[0], dlo + self.data_chunk)
                self._step(fwd, state, x[dlo:dhi], y[dlo:dhi], seg[dlo:dhi], acc[lo:hi], batched)
        return acc

    def plan(self, n_points: int) -> None:
        """Tell the engine how many points the job evaluates (it sizes the calibration and the
        compile decision by it); ``compile: on`` compiles from here on."""
        self.planned_points = max(self.planned_points, int(n_points))
        if self.opt.compile == "on":
            self._compile()

    def _compile(self) -> None:
        if not self.compiled:
            log.info("engine: torch.compile of the forward")
            self.compiled = True
            self._forwards.clear()

    def _calibrate(self, n_points: int, make_state, splits: tuple, first: bool) -> None:
        """Pick the mode, points per forward and samples per forward by timing one forward of
        each candidate on the job's own data (best of a few runs), within the memory budget.

        Candidates, in order: the per-point loop with 64, 128, ... samples per forward up to all
        of them, then (``mode`` auto or vmap, more than one point) vmap with 4, 16, 64, ...
        points per forward on all samples (fewer where the budget says so). A candidate's cost is
        its time per point for the whole split set. After the first, a candidate runs only if its
        estimated time fits in the calibration budget (5 % of the estimated job time, at least
        0.1 s), and a family stops growing after two candidates worse than the best so far."""
        x, y, seg = self._data(splits, first)
        n = x.shape[0]
        fixed_c, fixed_p = self.opt.data_chunk, self.opt.point_chunk
        chunks = [fixed_c] if fixed_c else sorted({min(n, 64 * 2**k) for k in range(12)})

        def cost(mode: str, p: int, c: int) -> float:
            """Seconds per point of the whole split set with p points x c samples per forward."""
            one = make_state(0, 1)

            def points():
                return {k: v.expand(p, *v.shape[1:]) for k, v in one.items()}

            state = points()
            self._prepare(state, first)
            if self.has_bn:
                bn = self._bn_state({k: v[:1] for k, v in state.items()}, 1, first)
                state.update({k: v.expand(p, *v.shape[1:]) for k, v in bn.items()})
            if mode == "loop":
                state = {k: v[0] for k, v in state.items()}
            fwd = self._forward(first, mode == "vmap", eager=True)
            acc = torch.zeros(p, 2, len(splits), dtype=torch.float64, device=self.device)
            t = _timed(lambda: self._step(fwd, state, x[:c], y[:c], seg[:c], acc, mode == "vmap"), self.device,
                       3 if p * c <= 4096 else 2)
            t_prep = _timed(lambda: self._prepare(points(), first), self.device, 1)
            return (t_prep + t * n / c) / p

        trials = []
        if self.opt.mode in ("auto", "loop"):
            trials += [("loop", 1, self._fit_chunk(c, 1)) for c in chunks]
        if self.opt.mode in ("auto", "vmap") and n_points > 1 and self._vmap_runs(make_state, splits, first):
            for p in [fixed_p] if fixed_p else [p for p in (4, 16, 64, 256, 1024) if p <= n_points] or [n_points]:
                c = self._fit_chunk(fixed_c or n, p)
                trials.append(("vmap", p if fixed_p else min(p, self._max_points(c)), c))
        results: dict = {}
        worse = {"loop": 0, "vmap": 0}
        spent = 0.0
        for mode, p, c in dict.fromkeys(trials):
            if results:
                best = min(results.values())
                if worse[mode] >= 2 or spent + 4 * p * c / n * best > max(0.1, 0.05 * n_points * best):
                    continue
            t0 = time.perf_counter()
            r = cost(mode, p, c)
            spent += time.perf_counter() - t0
            worse[mode] = worse[mode] + 1 if results and r > min(results.values()) else 0
            results[(mode, p, c)] = r
        (self.mode, self.point_chunk, self.data_chunk), t_point = min(results.items(), key=lambda kv: kv[1])
        self.calibration = {f"{m} P={p} n={c}": round(t * 1e3, 3) for (m, p, c), t in results.items()}
        self.calibrated = True
        log.info("engine calibration (ms per point): %s -> %s, %d points x %d samples per forward (%.2f s)",
                 self.calibration, self.mode, self.point_chunk, self.data_chunk, spent)
        if self.opt.compile == "auto" and n_points * t_point >= self.opt.compile_min_seconds:
            self._compile()  # compiling takes 10-60 s and saves some 15-20 % (measured on CPU)
