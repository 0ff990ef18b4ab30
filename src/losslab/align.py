"""Permutation alignment of two networks: Git Re-Basin weight matching, activation matching, REPAIR.

Hidden units of a network can be permuted without changing the function it computes. Two
independently trained networks may therefore be far apart in weight space only because their
units are listed in different orders. This module finds the orders that bring network B onto
network A and evaluates the straight line between A and the aligned B.

**Permutation specs are derived, not written.** :func:`permutation_spec` captures the module's
graph (``torch.fx`` symbolic tracing; failing that, tracing on the example input, which specialises
Python control flow on shapes and refuses control flow on data, naming the line) and follows every
value through it, axis by axis. Each Linear/Conv/Embedding output starts a hidden-unit *group*; the
group collects the layer's weight rows and bias, the normalisation parameters and running statistics
that act on those units, and the input columns of every next layer that reads them. Per-unit
operations (activations, dropout, pooling, reductions and softmax over other axes, reshapes and
transposes that move the unit axis as a whole) pass a group through, and so does a depthwise
convolution, whose weights and bias join the group; a flatten of ``C x H x W`` features turns the
channel permutation into blocks of ``H*W`` features; element-wise sums and products (residual
additions, position embeddings) tie their operands into one group. LayerNorm, GroupNorm,
InstanceNorm and BatchNorm move their parameters with the units. Attention (``nn.MultiheadAttention``,
or written from Linear layers with ``view``/``transpose``/``matmul``/``softmax`` or
``F.scaled_dot_product_attention``) gives a group of *blocks* (heads) with *parts* (query/key dims,
value/output dims); GroupNorm with ``1 < g < C`` groups cuts its group into ``g`` blocks. Only
permutations that map blocks to blocks and parts to themselves are used (:class:`Group`).
Whatever reaches the network output is never permuted, so the output layer keeps its order.

``chunk``/``split`` of a layer's output units (a fused query/key/value projection, a gated MLP), or a
reshape into ``(pieces, heads, dims)`` whose pieces are then picked (``unbind``, indexing), makes
each piece a group of its own, with the layer's rows cut among them.

An operation without a rule (a concatenation of hidden axes, a reshape that strides the units, a
grouped convolution, a layer such as ``nn.LocalResponseNorm``, ...) is allowed only where
the units it touches are not permuted anyway (on the input, or after the output layer); anywhere
else the spec is refused with a ``ValueError`` naming the node, the operation and the reason, as is
a module called twice, a parameter shared by two modules and a module that cannot be captured.
Nothing is aligned silently wrong.

**Conventions.** A permutation is a 1-D ``LongTensor`` ``p`` per group (a dict keyed by group
name); unit ``i`` of the aligned B is unit ``p[i]`` of B. BatchNorm running statistics are
permuted with their group; ``num_batches_tracked`` is not.

**Alignment methods**, both returning an :class:`Alignment` whose perms map B onto A:

* :func:`weight_matching` (Ainsworth et al., "Git Re-Basin"): coordinate descent on the inner
  product ``<A, P(B)>`` of all parameters (BatchNorm running statistics are statistics, not
  weights, and are left out). Each step solves one group's linear assignment problem
  (``scipy.optimize.linear_sum_assignment``) with the other groups held fixed; the group order is
  reshuffled by a seeded generator every sweep; a step is kept only if it raises the inner
  product, so the similarity never decreases, and the descent stops at a fixed point (a sweep
  that changes nothing) or after ``max_iter`` sweeps.
* :func:`activation_matching`: for each group, the correlation between the units of A and B over
  a fixed data tensor, then one linear assignment per group. The activations used are the
  *inputs of the next layers that read the group* (so after BatchNorm, the nonlinearity,
  pooling and flattening); for a residual stream every block input of the stage is used, pooled.
  Units no layer reads directly (the query/key dims of attention) are seen at the output of the
  layer that makes them, and inside ``nn.MultiheadAttention`` through its input projections. For
  groups of blocks and parts the assignment keeps the layout (:func:`_assign`).

**Barriers after alignment.** :func:`compare_lines` evaluates the straight line
``(1 - alpha) A + alpha B`` for the naive pair, for each aligned pair and, as an option, for each
aligned pair with REPAIR (Jordan et al.), with BatchNorm statistics recomputed at every point
(the losslab policy). It returns long-format rows; :func:`barriers` summarises them.

**REPAIR** (:class:`Repair`) corrects the variance collapse of interpolated networks: for each
hidden Linear/Conv layer, the per-unit mean and standard deviation of its output
(pre-activation; units on axis 1 for convolutions, on the last axis for Linear layers) in the
interpolated network are set to the interpolation of the two endpoints' values, measured on a fixed
data subset, layer after layer in graph order. The correction
``y -> (y - mean) * target_std / std + target_mean`` is folded into the layer's weight and bias,
so the result is again a flat vector. For a layer whose output goes straight into a BatchNorm or
an InstanceNorm, this rescaling is undone by the normalisation, which by itself gives each output
channel the mean ``beta_alpha`` and standard deviation ``|gamma_alpha|`` of the interpolated affine
parameters: the interpolated endpoint values (the mean exactly, the standard deviation whenever
``gamma`` has one sign at both ends). So in BatchNorm networks REPAIR reduces to the BatchNorm
reset that every losslab evaluation already does; those layers are not rescaled, and a network
whose every hidden layer feeds a BatchNorm gets identical ``aligned`` and ``aligned+repair`` lines.
LayerNorm and GroupNorm with fewer groups than channels normalise each sample over several units,
which neither undoes a per-unit rescaling nor resets the units' statistics over the data: there the
layers before them are corrected as usual, and the normalisation's outputs are corrected too
(per-unit statistics over samples and positions, folded into its affine parameters).
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import linecache
import math
import operator
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.fx as fx
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import summaries
from .flat import FlatModel, evaluate_point
from .io import Point

METHODS = ("weight_matching", "activation_matching")

_FIXED = 0  # the group of channels that are never permuted (network input and output)

_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
_POOL_MODULES = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}
_METADATA_ATTRS = {"shape", "dtype", "device", "ndim"}


def _rule(rule, functions=(), methods=()) -> dict:
    return {**dict.fromkeys(functions, rule), **{("method", m): rule for m in methods}}


# How the walk treats a call_function target or the ("method", name) of a call_method node; an int
# is a pooling over that many spatial dimensions. Anything else is an unknown operation.
_CALL_RULES: dict = {
    **_rule("pointwise", (
        torch.relu, torch.relu_, torch.tanh, torch.sigmoid, torch.exp, torch.neg, torch.abs, torch.sqrt, torch.rsqrt,
        operator.neg, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.tanh,
        F.sigmoid, F.softplus, F.hardtanh, F.hardswish, F.hardsigmoid, F.dropout, F.dropout1d, F.dropout2d,
        F.dropout3d, F.alpha_dropout,
    ), ("relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_", "contiguous", "clone", "to", "float", "type_as",
        "detach", "exp", "neg", "abs", "sqrt", "rsqrt")),
    **_rule("reshape", (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten),
            ("flatten", "view", "reshape", "squeeze", "unsqueeze", "unflatten")),
    **_rule("transpose", (torch.transpose, torch.permute, torch.movedim, torch.swapaxes, torch.t),
            ("transpose", "permute", "movedim", "swapaxes", "t")),
    **_rule("reduce", (torch.mean, torch.sum, torch.amax, torch.amin, torch.logsumexp),
            ("mean", "sum", "amax", "amin", "logsumexp")),
    **_rule("softmax", (torch.softmax, torch.log_softmax, F.softmax, F.log_softmax), ("softmax", "log_softmax")),
    **_rule("elementwise", (
        operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
        operator.itruediv, operator.pow, torch.add, torch.sub, torch.mul, torch.div, torch.where, torch.maximum,
        torch.minimum, torch.masked_fill,
    ), ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "masked_fill", "masked_fill_")),
    **_rule("matmul", (operator.matmul, torch.matmul, torch.bmm), ("matmul", "bmm")),
    **_rule("expand", (), ("expand", "expand_as")),
    **_rule("join", (torch.cat, torch.concat, torch.stack)),
    **_rule("split", (torch.chunk, torch.split, torch.unbind), ("chunk", "split", "unbind")),
    **_rule("metadata", methods=("size", "dim")),
    operator.getitem: "getitem", F.scaled_dot_product_attention: "attention", F.linear: "linear",
    F.layer_norm: "layer_norm_fn",
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3,
    F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
    F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
}
# Normalisations that give every channel of every sample mean beta and std |gamma| by themselves
# (and GroupNorm with one channel per group): a per-channel rescaling of their input is undone, so
# REPAIR leaves the layers feeding them alone.
_RESETTING_NORMS = (_BatchNorm, nn.modules.instancenorm._InstanceNorm)


# =====================================================================================
# Permutation specs
# =====================================================================================
@dataclass(frozen=True)
class Axis:
    """One axis of one parameter or buffer that a group permutes.

    Entries ``start .. start + n * block`` of the axis belong to the group: ``block`` consecutive
    entries per unit (``block > 1`` where a ``C x H x W`` feature map was flattened into a Linear
    layer's input), for the units ``units`` of the group in that order (``None``: all ``size``
    units in the group's own order, ``n = size``). A partial slice with ``units`` arises where a
    group has several parts (attention heads: the query and key rows of a fused projection)."""

    name: str
    axis: int
    block: int = 1
    buffer: bool = False
    start: int = 0
    units: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Tap:
    """A graph value through which units of a group are seen (what :func:`activation_matching`
    correlates): axis ``dim`` of node ``node``'s value holds ``units`` (``None``: all), ``block``
    entries each. ``proj`` ``(weight, bias, start, rows)``: the value is first projected by rows
    ``start .. start + rows`` of those parameters (the inside of an ``nn.MultiheadAttention``)."""

    node: str
    dim: int
    block: int = 1
    units: tuple[int, ...] | None = None
    proj: tuple | None = None
    start: int = 0  # the units start at this entry of axis ``dim`` (one piece of a split output)


@dataclass(frozen=True)
class Group:
    """A set of hidden units permuted together.

    ``axes`` are every parameter/buffer axis the permutation reorders; ``taps`` the graph values
    through which the units feed the network. ``blocks`` and ``parts`` say which permutations keep
    the function: units are ``blocks`` blocks of ``sum(parts)`` units each (block-major), each
    block cut into parts of the given sizes. A permutation may reorder whole blocks and, inside a
    block, reorder the units of each part separately. One block with one part: any permutation
    (an ordinary layer). Attention: one block per head, parts (query/key dims, value/output dims).
    GroupNorm with ``g`` groups: ``g`` blocks of one part."""

    name: str
    size: int
    axes: tuple[Axis, ...]
    taps: tuple[Tap, ...]
    blocks: int = 1
    parts: tuple[int, ...] = ()

    @property
    def layout(self) -> tuple[int, tuple[int, ...]]:
        return self.blocks, (self.parts or (self.size // self.blocks,))


@dataclass(frozen=True)
class PermutationSpec:
    """The hidden-unit groups of one architecture, derived by :func:`permutation_spec`.

    ``repair_layers`` are the modules whose outputs REPAIR rescales, ``repair_dims`` their unit
    axes: every hidden Linear/Conv layer whose output does not go straight into a normalisation that
    resets per-channel statistics (BatchNorm, InstanceNorm, GroupNorm with one channel per group), and
    every LayerNorm over one axis and GroupNorm with fewer groups than channels, with affine parameters
    (see the module docstring). ``graph`` is the captured ``torch.fx`` graph of
    the module, used to run it layer by layer; ``capture`` says how it was captured."""

    groups: tuple[Group, ...]
    repair_layers: tuple[str, ...]
    graph: fx.Graph = field(repr=False, compare=False)
    repair_dims: tuple[int, ...] = ()
    capture: str = "symbolic"

    def identity(self) -> dict[str, torch.Tensor]:
        """The identity permutation of every group."""
        return {g.name: torch.arange(g.size) for g in self.groups}

    def random(self, seed: int) -> dict[str, torch.Tensor]:
        """A uniformly random function-preserving permutation of every group, from a seeded generator."""
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for g in self.groups:
            blocks, parts = g.layout
            bs = sum(parts)
            order = torch.randperm(blocks, generator=gen) if blocks > 1 else torch.zeros(1, dtype=torch.long)
            p = torch.empty(g.size, dtype=torch.long)
            for b in range(blocks):
                off = 0
                for k in parts:
                    p[b * bs + off: b * bs + off + k] = int(order[b]) * bs + off + torch.randperm(k, generator=gen)
                    off += k
            out[g.name] = p
        return out

    def check(self, perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``perms`` as long tensors after checking there is one function-preserving
        permutation of the right size per group; raise ``ValueError`` naming the group otherwise."""
        names = [g.name for g in self.groups]
        missing, extra = sorted(set(names) - set(perms)), sorted(set(perms) - set(names))
        if missing or extra:
            raise ValueError(f"permutations do not match the spec's groups: missing {missing}, unknown {extra}; "
                             f"groups are {names}")
        out = {}
        for g in self.groups:
            p = torch.as_tensor(perms[g.name]).long()
            if p.shape != (g.size,) or not torch.equal(p.sort().values.cpu(), torch.arange(g.size)):
                raise ValueError(f"permutation of group {g.name!r} must be a permutation of 0..{g.size - 1}, "
                                 f"got a tensor of shape {tuple(p.shape)}")
            if not _keeps_layout(p.cpu(), *g.layout):
                raise ValueError(f"permutation of group {g.name!r} mixes units of different blocks or parts "
                                 f"({g.layout[0]} blocks of parts {g.layout[1]}), which changes the function")
            out[g.name] = p
        return out


def _keeps_layout(p: torch.Tensor, blocks: int, parts: tuple[int, ...]) -> bool:
    """True when ``p`` maps whole blocks onto whole blocks and each part onto the same part."""
    if blocks == 1 and len(parts) == 1:
        return True
    bs = sum(parts)
    part_of = torch.cat([torch.full((k,), i) for i, k in enumerate(parts)]).repeat(blocks)
    block_of = torch.arange(blocks).repeat_interleave(bs)
    if not torch.equal(part_of[p], part_of):
        return False
    src = block_of[p].view(blocks, bs)
    return bool((src == src[:, :1]).all())


def _assign(gain: np.ndarray, blocks: int, parts: tuple[int, ...]) -> np.ndarray:
    """The permutation ``p`` maximising ``sum_i gain[i, p[i]]`` among those that keep the layout
    (whole blocks to whole blocks, each part within itself): one assignment per pair of blocks and
    part, then one assignment of blocks on the summed best values. Exact for this family."""
    if blocks == 1 and len(parts) == 1:
        return linear_sum_assignment(gain, maximize=True)[1]
    bs = sum(parts)
    offs = np.cumsum((0,) + tuple(parts))[:-1]
    value = np.zeros((blocks, blocks))
    inner: dict = {}
    for a in range(blocks):
        for b in range(blocks):
            for off, k in zip(offs, parts):
                sub = gain[a * bs + off: a * bs + off + k, b * bs + off: b * bs + off + k]
                rows, cols = linear_sum_assignment(sub, maximize=True)
                value[a, b] += sub[rows, cols].sum()
                inner[a, b, off] = cols
    order = linear_sum_assignment(value, maximize=True)[1] if blocks > 1 else np.zeros(1, dtype=int)
    p = np.empty(gain.shape[0], dtype=np.int64)
    for a in range(blocks):
        b = order[a]
        for off, k in zip(offs, parts):
            p[a * bs + off: a * bs + off + k] = b * bs + off + inner[a, b, off]
    return p


# =====================================================================================
# Graph capture
# =====================================================================================
class _DataDependent(Exception):
    """Control flow that depends on tensor values (raised by :class:`_ShapeTracer`)."""


def _fetch(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


@contextlib.contextmanager
def _unpatched():
    """Module calls and attribute reads as usual, while ``torch.fx`` has them patched for tracing:
    the example run of :class:`_ShapeTracer` must not be traced itself."""
    from torch.fx import _symbolic_trace as st

    saved = torch.nn.Module.__call__, torch.nn.Module.__getattr__
    torch.nn.Module.__call__, torch.nn.Module.__getattr__ = st._orig_module_call, st._orig_module_getattr
    try:
        yield
    finally:
        torch.nn.Module.__call__, torch.nn.Module.__getattr__ = saved


class _ConcreteProxy(fx.Proxy):
    """A proxy whose length and integer value are known from the example run (shapes only)."""

    def __len__(self) -> int:
        return len(self.tracer.concrete(self.node))

    def __index__(self) -> int:
        return int(self.tracer.concrete(self.node))

    __int__ = __index__


class _ShapeTracer(fx.Tracer):
    """``torch.fx`` tracing that runs the module on a real example input alongside the trace.

    Every node's value is computed as the graph is built, and whether it depends on tensor data or
    only on shapes (``x.dim()``, ``x.shape``, ``x.size(i)`` and arithmetic on them). Python control
    flow on a shape-only value (``if x.dim() == 2``, ``for i in range(x.shape[1])``, ``len``)
    takes the branch the example takes, so the graph is specialised to the example's shapes; control
    flow on a data-dependent value raises :class:`_DataDependent` naming the line and module."""

    def __init__(self, example: torch.Tensor):
        super().__init__()
        self.example = example
        self.values: dict[fx.Node, object] = {}
        self.data: dict[fx.Node, bool] = {}

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def concrete(self, node: fx.Node):
        if self.data.get(node, True) and not torch.is_tensor(self.values.get(node)):
            raise _DataDependent(self._where("a value computed from tensor data is used as a Python number"))
        return self.values[node]

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind == "output":
            return node
        if kind == "placeholder":
            value, data = self.example, True
        elif kind == "get_attr":
            with _unpatched():
                value, data = _fetch(self.root, target), True
        else:
            a, kw = fx.node.map_arg((node.args, node.kwargs), lambda n: self.values[n])
            with _unpatched():
                if kind == "call_module":
                    value = self.root.get_submodule(target)(*a, **kw)
                elif kind == "call_function":
                    value = target(*a, **kw)
                else:
                    value = getattr(a[0], target)(*a[1:], **kw)
            meta = (kind == "call_method" and target in ("size", "dim", "numel")) or (
                target is getattr and len(args) == 2 and args[1] in _METADATA_ATTRS)
            data = not meta and any(self.data[n] for n in node.all_input_nodes)
        self.values[node], self.data[node] = value, data
        return node

    def _where(self, what: str) -> str:
        here = Path(__file__).resolve()
        torch_dir = Path(torch.__file__).resolve().parent
        frame = inspect.currentframe()
        while frame is not None:
            f = Path(frame.f_code.co_filename).resolve()
            if f != here and torch_dir not in f.parents:
                break
            frame = frame.f_back
        module = self.scope.module_path or "the top-level module"
        if frame is None:
            return f"{what} (in {module})"
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        return f"{what} at {frame.f_code.co_filename}:{frame.f_lineno} `{line}` (in {module!r})"

    def to_bool(self, obj: fx.Proxy) -> bool:
        if self.data[obj.node]:
            raise _DataDependent(self._where("control flow depends on tensor values"))
        return bool(self.values[obj.node])

    def iter(self, obj: fx.Proxy):
        value = self.values[obj.node]  # a tuple of tensors or a tensor: its length is a shape, not data
        if not isinstance(value, (tuple, list, torch.Size)) and not torch.is_tensor(value):
            raise _DataDependent(self._where(f"iteration over a {type(value).__name__}"))
        return iter([obj[i] for i in range(len(value))])


def _capture(module: nn.Module, example: torch.Tensor) -> tuple[fx.Graph, str]:
    """The module's graph with its leaf modules (those of ``torch.nn``) as calls, and how it was
    captured: ``symbolic`` (``torch.fx`` symbolic tracing, valid for every input), else
    ``example`` (:class:`_ShapeTracer`: Python control flow on shapes specialised to the
    example's; the graph is replayed on a batch of another size and must give the module's
    outputs). ``torch.export`` is not used: it decomposes ``nn.Linear`` and friends into aten
    operations, and the walk needs the module calls to find parameters and REPAIR layers."""
    try:
        return fx.Tracer().trace(module), "symbolic"
    except Exception as exc:  # noqa: BLE001 - any failure moves on to the example-based capture
        first = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    cls = type(module).__name__
    try:
        with torch.no_grad():
            graph = _ShapeTracer(example).trace(module)
    except _DataDependent as exc:
        raise ValueError(f"cannot derive a permutation spec: torch.fx could not trace {cls} symbolically ({first}), "
                         f"and tracing it on the example input stopped: {exc}; data-dependent control flow cannot "
                         "be captured once for every input") from None
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot derive a permutation spec: torch.fx could not trace {cls} ({first}), nor on the "
                         f"example input ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    bigger = torch.cat([example, example[:1]])
    with torch.no_grad():
        want, got = module(bigger), fx.Interpreter(module, graph=graph).run(bigger)
    if not (torch.is_tensor(want) and torch.is_tensor(got) and want.shape == got.shape
            and torch.allclose(want, got, rtol=1e-4, atol=1e-5)):
        raise ValueError(f"cannot derive a permutation spec: {cls} was traced on the example input, but the graph "
                         "does not reproduce the module on a batch of another size (control flow on the batch size?)")
    return graph, "example"


# =====================================================================================
# The walk: how each value's axes relate to the groups
# =====================================================================================
@dataclass(frozen=True)
class _T:
    """What one axis of a value holds. ``kind`` ``f``: the units of group ``gid`` (``block`` entries
    each; group 0 is the never-permuted input/output); ``h``: the blocks (heads) of ``gid``; ``w``:
    the units within one block of ``gid``; ``a``: entries that are all equal (a broadcast axis)."""

    kind: str
    gid: int = _FIXED
    block: int = 1


_F0, _ANY = _T("f"), _T("a")


class _Multi(tuple):
    """The state of a tuple/list value: one state per element."""


class _Opaque(Exception):
    """A rule met a layout it cannot follow; the node is treated as an unknown operation."""


def _refuse(node: str, reason: str) -> ValueError:
    """The error for a graph that cannot be followed soundly, naming the node and the reason."""
    return ValueError(f"cannot derive a permutation spec: node {node!r}: {reason}; "
                      "refusing rather than aligning the network silently wrong")


def _dims(d, ndim: int) -> list[int]:
    return [int(x) % ndim for x in (d if isinstance(d, (tuple, list)) else (d,))]


def _arg(node: fx.Node, i: int, key: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(key, default)


class _Walk:
    """One pass over the captured graph that builds the groups with a union-find.

    Every tensor value carries one :class:`_T` per axis. Layers start groups (their output axis)
    and record which parameter axes each group permutes; rules for the operations in between move,
    split, merge and tie the axes; whatever reaches the output is fixed. Ties that are not equality
    of units (attention heads, GroupNorm groups) are recorded as constraints and resolved in
    :meth:`finish`, which builds the final :class:`Group` objects."""

    def __init__(self, module: nn.Module, graph: fx.Graph, shapes: dict[str, object]):
        self.modules = dict(module.named_modules())
        self.params = dict(module.named_parameters())
        self.buffers = dict(module.named_buffers())
        self.graph, self.shapes = graph, shapes
        self.parent, self.size, self.names, self.is_layer = [_FIXED], [0], [""], [False]
        self.axes: dict[int, list[tuple]] = defaultdict(list)  # gid -> (name, axis, block, buffer, start)
        self.taps: dict[int, list[Tap]] = defaultdict(list)
        self.sources: dict[int, list[Tap]] = defaultdict(list)
        self.structure: list[tuple[int, int, str]] = []  # (gid, blocks, node)
        self.ties: list[tuple[int, int]] = []  # head ties
        self.pieces: dict[int, list[tuple[int, int]]] = {}  # a split group -> its pieces (group, first unit)
        self.state: dict[str, object] = {}
        self.unknown: list[tuple[str, str, list[int]]] = []  # (node, what, groups it touches)
        self.layers: list[tuple[fx.Node, int, int, str]] = []  # (node, group, unit dim, kind)
        self.called: set[str] = set()
        self.attrs: list[fx.Node] = []
        self.tail = self.output_tail()

    def output_tail(self) -> set[str]:
        """Nodes whose value reaches the network output without passing a layer: their axes are
        output axes, which are never permuted."""
        out = [n for n in self.graph.nodes if n.op == "output"]
        tail, todo = set(), list(out)
        while todo:
            n = todo.pop()
            if n.name in tail:
                continue
            tail.add(n.name)
            layer = n.op == "call_module" and isinstance(
                self.modules[n.target], (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding, nn.MultiheadAttention))
            if not (layer or (n.op == "call_function" and n.target is F.linear)):
                todo.extend(n.all_input_nodes)
        return tail

    # ----- union-find over group ids -----------------------------------------------------
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def new_group(self, name: str, size: int, layer: bool = True) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.names.append(name)
        self.is_layer.append(layer)
        return len(self.parent) - 1

    def union(self, a: int, b: int) -> None:
        ra, rb = sorted((self.find(a), self.find(b)))  # the older group (or _FIXED) stays the root
        if ra != rb:
            if ra != _FIXED and self.size[ra] != self.size[rb]:
                raise _Opaque(f"ties groups of {self.size[ra]} and {self.size[rb]} units")
            if ra != _FIXED and (ra in self.pieces or rb in self.pieces):
                raise _Opaque("uses a split layer output whole as well")
            self.parent[rb] = ra
            for c, _ in self.pieces.get(rb, ()):
                self.union(c, _FIXED)
            self.is_layer[ra] = self.is_layer[ra] or self.is_layer[rb]

    def live(self, t: _T) -> bool:
        return t.kind != "a" and self.find(t.gid) != _FIXED

    def fix(self, state) -> None:
        for t in self.tags(state):
            if t.kind != "a":
                self.union(t.gid, _FIXED)

    def tags(self, state) -> list[_T]:
        if isinstance(state, _Multi):
            return [t for s in state for t in self.tags(s)]
        return list(state) if isinstance(state, tuple) else []

    # ----- states --------------------------------------------------------------------------
    def shape(self, n) -> tuple | None:
        s = self.shapes.get(n.name) if isinstance(n, fx.Node) else None
        return s if isinstance(s, tuple) else None

    def st(self, n):
        return self.state.get(n.name) if isinstance(n, fx.Node) else None

    def fixed_state(self, shape):
        if isinstance(shape, tuple):
            return tuple(_F0 for _ in shape)
        if isinstance(shape, list):
            return _Multi(self.fixed_state(s) for s in shape)
        return None

    def tensor(self, n) -> tuple[tuple, tuple]:
        """(state, shape) of a tensor argument; raise :class:`_Opaque` when it is not one."""
        s, shape = self.st(n), self.shape(n)
        if not isinstance(s, tuple) or isinstance(s, _Multi) or shape is None:
            raise _Opaque("an argument that is not a tensor")
        return s, shape

    # ----- the walk ----------------------------------------------------------------------
    def run(self) -> "_Walk":
        for node in self.graph.nodes:
            self.state[node.name] = self.visit(node)
        return self

    def visit(self, node: fx.Node):
        if node.op == "placeholder":
            return self.fixed_state(self.shapes.get(node.name))
        if node.op == "get_attr":
            return self.get_attr(node)
        if node.op == "output":
            for n in node.all_input_nodes:
                self.fix(self.st(n))
            return None
        what = self.label(node)
        try:
            if node.op == "call_module":
                mod = self.modules[node.target]
                if any(True for _ in mod.parameters(recurse=False)) or any(True for _ in mod.buffers(recurse=False)):
                    if node.target in self.called:
                        raise _refuse(node.name, f"module {node.target!r} is called more than once; its parameters "
                                                 "would be shared by two places in the network and cannot be "
                                                 "permuted for both")
                    self.called.add(node.target)
                return self.visit_module(node, mod)
            return self.visit_call(node)
        except _Opaque as exc:
            return self.opaque(node, f"{what} ({exc})")

    def label(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"module {node.target!r} ({type(self.modules[node.target]).__name__})"
        if node.op == "call_method":
            return f"tensor method .{node.target}()"
        return f"function {getattr(node.target, '__name__', node.target)}"

    def get_attr(self, node: fx.Node):
        shape = self.shapes.get(node.name)
        if not isinstance(shape, tuple):
            return None
        self.attrs.append(node)
        is_param, is_buffer = node.target in self.params, node.target in self.buffers
        if not (is_param or is_buffer):
            return self.fixed_state(shape)  # a constant: its entries stay where they are
        out = []
        for axis, n in enumerate(shape):  # each axis of a parameter is permuted with whatever it meets
            if n == 1:
                out.append(_ANY)
                continue
            g = self.new_group(node.target, n, layer=False)
            self.axes[g].append((node.target, axis, 1, is_buffer, 0))
            out.append(_T("f", g))
        return tuple(out)

    def visit_module(self, node: fx.Node, mod: nn.Module):
        if isinstance(mod, nn.Linear):
            return self.linear_module(node, mod)
        if type(mod) in _CONVS:
            return self.conv(node, mod)
        if isinstance(mod, nn.Embedding):
            return self.embedding(node, mod)
        if isinstance(mod, nn.MultiheadAttention):
            return self.attention_module(node, mod)
        if isinstance(mod, (_BatchNorm, nn.modules.instancenorm._InstanceNorm)):
            return self.channel_norm(node, mod)
        if isinstance(mod, nn.GroupNorm):
            return self.group_norm(node, mod)
        if isinstance(mod, nn.LayerNorm):
            return self.layer_norm(node, len(mod.normalized_shape), [(f"{node.target}.{p}", getattr(mod, p))
                                                                       for p in ("weight", "bias")])
        if isinstance(mod, _POINTWISE_MODULES):
            return self.pointwise(node)
        if type(mod) in _POOL_MODULES:
            return self.spatial(node, _POOL_MODULES[type(mod)])
        if isinstance(mod, (nn.Flatten, nn.Unflatten)):
            return self.reshape(node)
        if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
            return self.softmax(node, mod.dim)
        return self.opaque(node, f"{self.label(node)}: no permutation rule for this layer")

    def visit_call(self, node: fx.Node):
        key = node.target if node.op == "call_function" else ("method", node.target)
        rule = _CALL_RULES.get(key)
        if isinstance(rule, int):
            return self.spatial(node, rule)
        if rule == "metadata" or (key is getattr and len(node.args) == 2 and node.args[1] in _METADATA_ATTRS):
            return None
        if key is getattr and len(node.args) == 2 and node.args[1] in ("T", "mT"):
            return self.transpose(node)
        if rule == "softmax":
            return self.softmax(node, _arg(node, 1, "dim"))
        if rule is not None:
            return getattr(self, rule)(node)
        if self.shapes.get(node.name) is None and not any(self.tags(self.st(n)) for n in node.all_input_nodes):
            return None  # arithmetic on shapes and numbers
        return self.opaque(node, f"{self.label(node)}: no permutation rule for this operation")

    # ----- rules ---------------------------------------------------------------------------
    def opaque(self, node: fx.Node, what: str):
        """An operation not known to act on each unit separately. After the last layer (in the
        output tail) it fixes the units it reads; elsewhere it is allowed only where every unit it
        reads stays in place for another reason (checked in :meth:`finish`). Its output is never
        permuted."""
        touched = [t.gid for n in node.all_input_nodes for t in self.tags(self.st(n)) if t.kind != "a"]
        if node.name in self.tail:
            for g in touched:
                self.union(g, _FIXED)
        elif touched:
            self.unknown.append((node.name, what, touched))
        return self.fixed_state(self.shapes.get(node.name))

    def unify(self, tags: list[_T], node: fx.Node) -> _T:
        """Tie tags that index the same axis of one computation; return the tag of the result."""
        tags = [t for t in tags if t.kind != "a"]
        if not tags:
            return _ANY
        kinds = {t.kind for t in tags}
        if len(kinds) > 1:
            if any(self.live(t) for t in tags if t.kind == "f"):
                raise _Opaque("mixes hidden units with attention heads on one axis")
            for t in tags:
                self.union(t.gid, _FIXED)
            return _F0
        live = [t for t in tags if self.live(t)]
        if tags[0].kind == "f" and len({t.block for t in live}) > 1:
            raise _refuse(node.name, f"{self.label(node)} combines channels laid out in different blocks "
                                     f"{sorted({t.block for t in live})}")
        for t in tags[1:]:
            if tags[0].kind == "h":
                if self.find(tags[0].gid) == _FIXED or self.find(t.gid) == _FIXED:
                    self.union(tags[0].gid, _FIXED)
                    self.union(t.gid, _FIXED)
                else:
                    self.ties.append((tags[0].gid, t.gid))
            else:
                self.union(tags[0].gid, t.gid)
        return live[0] if live else tags[0]

    def broadcast(self, node: fx.Node, operands: list[tuple[tuple, tuple]], out_shape: tuple) -> tuple:
        """Tags of an element-wise result: operands aligned from the right, size-1 axes skipped."""
        out = []
        for i in range(1, len(out_shape) + 1):
            here = [s[-i] for s, shape in operands if len(shape) >= i and shape[-i] != 1]
            out.append(self.unify(here, node) if out_shape[-i] != 1 else _ANY)
        return tuple(reversed(out))

    def linear_module(self, node: fx.Node, mod: nn.Linear):
        s, shape = self.tensor(node.args[0])
        if len(node.all_input_nodes) != 1:
            raise _Opaque("other than one tensor input")
        t = s[-1]
        if t.kind not in "fa":
            raise _Opaque("reads attention heads on its feature axis")
        self.read(node.args[0], len(shape) - 1, t, f"{node.target}.weight", 1)
        g = self.new_group(node.target, mod.out_features)
        self.axes[g].append((f"{node.target}.weight", 0, 1, False, 0))
        if mod.bias is not None:
            self.axes[g].append((f"{node.target}.bias", 0, 1, False, 0))
        self.sources[g].append(Tap(node.name, len(shape) - 1))
        self.layers.append((node, g, -1, "layer"))
        return s[:-1] + (_T("f", g),)

    def read(self, src: fx.Node, dim: int, t: _T, name: str, axis: int) -> None:
        """A layer reads the units of tag ``t`` (on axis ``dim`` of ``src``) with ``name``'s axis."""
        if t.kind == "f":
            self.axes[t.gid].append((name, axis, t.block, False, 0))
            self.taps[t.gid].append(Tap(src.name, dim, t.block))

    def conv(self, node: fx.Node, mod: nn.Module):
        s, shape = self.tensor(node.args[0])
        if len(node.all_input_nodes) != 1:
            raise _Opaque("other than one tensor input")
        depthwise = mod.groups == mod.in_channels == mod.out_channels
        if (mod.groups != 1 and not depthwise) or len(shape) != _CONVS[type(mod)] + 2:
            raise _Opaque(f"groups={mod.groups} on a {len(shape)}-D tensor (only ungrouped or depthwise convolutions "
                          "on batched inputs are followed)")
        if any(self.live(t) for t in s[2:]) or s[1].kind not in "fa":
            raise _Opaque("hidden units on a spatial axis")
        t = s[1]
        spatial = tuple(_F0 for _ in s[2:])
        if depthwise:  # output channel i is computed from input channel i alone: the group passes through
            if t.kind == "f":
                self.taps[t.gid].append(Tap(node.args[0].name, 1, t.block))
                self.axes[t.gid] += [(f"{node.target}.{p}", 0, t.block, False, 0) for p in ("weight", "bias")
                                     if getattr(mod, p) is not None]
                self.layers.append((node, t.gid, 1, "layer"))
            return (s[0], t) + spatial
        self.read(node.args[0], 1, t, f"{node.target}.weight", 1)
        g = self.new_group(node.target, mod.out_channels)
        self.axes[g].append((f"{node.target}.weight", 0, 1, False, 0))
        if mod.bias is not None:
            self.axes[g].append((f"{node.target}.bias", 0, 1, False, 0))
        self.sources[g].append(Tap(node.name, 1))
        self.layers.append((node, g, 1, "layer"))
        return (s[0], _T("f", g)) + spatial

    def embedding(self, node: fx.Node, mod: nn.Embedding):
        s, shape = self.tensor(node.args[0])
        if any(self.live(t) for t in s):
            raise _Opaque("indices that carry hidden units")
        g = self.new_group(node.target, mod.embedding_dim)
        self.axes[g].append((f"{node.target}.weight", 1, 1, False, 0))
        self.sources[g].append(Tap(node.name, len(shape)))
        return s + (_T("f", g),)

    def attention_module(self, node: fx.Node, mod: nn.MultiheadAttention):
        """``nn.MultiheadAttention``: the query/key dims of each head are one part, the value/output
        dims another, the heads are blocks; query, key and value inputs are tied into one group."""
        if not mod._qkv_same_embed_dim:
            raise _Opaque("separate kdim/vdim projections are not followed")
        q, k, v = (_arg(node, i, name) for i, name in enumerate(("query", "key", "value")))
        states = [self.tensor(n) for n in (q, k, v)]
        for n in node.all_input_nodes:
            if n not in (q, k, v) and any(self.live(t) for t in self.tags(self.st(n))):
                raise _Opaque("a mask that carries hidden units")
        for s, _ in states:
            if any(self.live(t) for t in s[:-1]):
                raise _Opaque("hidden units on a sequence or batch axis")
        t_in = self.unify([s[-1] for s, _ in states], node)
        if t_in.kind == "f" and t_in.block != 1:
            raise _Opaque("inputs laid out in blocks")
        e, h = mod.embed_dim, mod.num_heads
        if t_in.kind == "f":
            self.axes[t_in.gid].append((f"{node.target}.in_proj_weight", 1, 1, False, 0))
        qk, vo = self.new_group(f"{node.target}.qk", e), self.new_group(f"{node.target}.vo", e)
        self.structure += [(qk, h, node.name), (vo, h, node.name)]
        self.ties.append((qk, vo))
        for gid, start in ((qk, 0), (qk, e), (vo, 2 * e)):
            self.axes[gid].append((f"{node.target}.in_proj_weight", 0, 1, False, start))
            if mod.in_proj_bias is not None:
                self.axes[gid].append((f"{node.target}.in_proj_bias", 0, 1, False, start))
        for gid, p in ((qk, "bias_k"), (vo, "bias_v")):
            if getattr(mod, p) is not None:
                self.axes[gid].append((f"{node.target}.{p}", 2, 1, False, 0))
        proj = (f"{node.target}.in_proj_weight", f"{node.target}.in_proj_bias" if mod.in_proj_bias is not None else None)
        for gid, src, start in ((qk, q, 0), (qk, k, e), (vo, v, 2 * e)):
            self.taps[gid].append(Tap(src.name, len(self.shape(src)) - 1, proj=proj + (start, e)))
        self.axes[vo].append((f"{node.target}.out_proj.weight", 1, 1, False, 0))
        out = self.new_group(f"{node.target}.out_proj", e)
        self.axes[out].append((f"{node.target}.out_proj.weight", 0, 1, False, 0))
        if mod.out_proj.bias is not None:
            self.axes[out].append((f"{node.target}.out_proj.bias", 0, 1, False, 0))
        s_q = states[0][0]
        shapes = self.shapes.get(node.name)
        weights = self.fixed_state(shapes[1]) if isinstance(shapes, list) and len(shapes) > 1 else None
        return _Multi((s_q[:-1] + (_T("f", out),), weights))

    def channel_norm(self, node: fx.Node, mod: nn.Module):
        """BatchNorm and InstanceNorm: per-channel statistics on axis 1."""
        s, shape = self.tensor(node.args[0])
        t = s[1]
        if t.kind not in "fa":
            raise _Opaque("attention heads on the channel axis")
        for attr, is_buffer in (("weight", False), ("bias", False), ("running_mean", True), ("running_var", True)):
            if getattr(mod, attr, None) is not None and t.kind == "f":
                self.axes[t.gid].append((f"{node.target}.{attr}", 0, t.block, is_buffer, 0))
        return s

    def group_norm(self, node: fx.Node, mod: nn.GroupNorm):
        """GroupNorm(g, C): statistics over each group of C/g channels; with 1 < g < C only
        permutations that keep the groups keep the function (``g`` blocks)."""
        s, shape = self.tensor(node.args[0])
        t = s[1]
        if t.kind not in "fa" or (t.kind == "f" and t.block != 1) or any(self.live(u) for u in s[2:]):
            raise _Opaque("channels that are not one plain axis")
        if t.kind == "f":
            if 1 < mod.num_groups < mod.num_channels:
                self.structure.append((t.gid, mod.num_groups, node.name))
            if mod.affine:
                self.axes[t.gid] += [(f"{node.target}.{p}", 0, 1, False, 0) for p in ("weight", "bias")]
            if mod.affine and mod.num_groups < mod.num_channels:
                self.layers.append((node, t.gid, 1, "norm"))
        return s

    def layer_norm(self, node: fx.Node, k: int, params: list[tuple[str, object]]):
        """LayerNorm over the last ``k`` axes: any permutation of those entries keeps the
        statistics; the affine parameters move with their axes."""
        s, shape = self.tensor(node.args[0])
        for j, t in enumerate(s[len(s) - k:]):
            if t.kind not in "fa":
                raise _Opaque("attention heads inside the normalised axes")
            for name, p in params:
                if isinstance(p, fx.Node):
                    ps = self.st(p)
                    if isinstance(ps, tuple) and len(ps) == k:
                        if self.live(t) and t.block != 1:
                            raise _Opaque("a normalised axis laid out in blocks, with separate affine parameters")
                        self.unify([t, ps[j]], node)
                elif p is not None and t.kind == "f":
                    self.axes[t.gid].append((name, j, t.block, False, 0))
        if k == 1 and s[-1].kind == "f" and isinstance(params[0][1], nn.Parameter):
            self.layers.append((node, s[-1].gid, -1, "norm"))
        return s

    def pointwise(self, node: fx.Node):
        ins = [n for n in node.all_input_nodes if self.tags(self.st(n))]
        if len(ins) != 1 or self.shapes.get(node.name) != self.shape(ins[0]):
            raise _Opaque("other than one tensor input of its own shape")
        return self.st(ins[0])

    def spatial(self, node: fx.Node, dims: int):
        s, s_in = self.tensor(node.args[0])
        s_out = self.shapes.get(node.name)
        if (not isinstance(s_out, tuple) or len(s_in) != dims + 2 or len(s_out) != len(s_in) or s_out[:2] != s_in[:2]
                or any(self.live(t) for t in s[2:])):
            raise _Opaque("does not keep the [batch, channel] axes")
        return s[:2] + tuple(_F0 for _ in s[2:])

    def softmax(self, node: fx.Node, dim):
        s, shape = self.tensor(node.args[0])
        if dim is None or self.live(s[int(dim) % len(shape)]):
            raise _Opaque(f"normalises over dim={dim}, which holds hidden units")
        return s

    def reshape(self, node: fx.Node):
        s, s_in = self.tensor(node.args[0])
        s_out = self.shapes.get(node.name)
        if not isinstance(s_out, tuple):
            raise _Opaque("no tensor result")
        ia = [i for i, n in enumerate(s_in) if n != 1]
        ob = [i for i, n in enumerate(s_out) if n != 1]
        out = [_ANY] * len(s_out)
        p = q = 0
        while p < len(ia) and q < len(ob):
            gi, go = [ia[p]], [ob[q]]
            pi, po = s_in[ia[p]], s_out[ob[q]]
            p, q = p + 1, q + 1
            while pi != po:
                if pi < po and p < len(ia):
                    gi.append(ia[p]); pi *= s_in[ia[p]]; p += 1  # noqa: E702
                elif q < len(ob):
                    go.append(ob[q]); po *= s_out[ob[q]]; q += 1  # noqa: E702
                else:
                    raise _Opaque(f"from {s_in} to {s_out}")
            tags = [s[i] for i in gi]
            live = [t for t in tags if self.live(t)]
            if not live:
                for j in go:
                    out[j] = _ANY if all(t.kind == "a" for t in tags) else _F0
            elif len(gi) == 1 and len(go) == 1:
                out[go[0]] = tags[0]
            elif len(go) == 1 and tags[0].kind == "f" and len(live) == 1 and live[0] is tags[0]:
                out[go[0]] = _T("f", tags[0].gid, tags[0].block * math.prod(s_in[i] for i in gi[1:]))
            elif (len(go) == 1 and len(gi) == 2 and [t.kind for t in tags] == ["h", "w"] and tags[1].block == 1
                  and self.head_tied(tags[0].gid, tags[1].gid)):
                out[go[0]] = _T("f", tags[1].gid)  # heads merged back: the units of the within-head group
            elif len(gi) == 1 and tags[0].kind == "f" and tags[0].block == 1 and len(go) == 2:
                t = tags[0]
                self.structure.append((t.gid, s_out[go[0]], node.name))
                out[go[0]], out[go[1]] = _T("h", t.gid), _T("w", t.gid)
            elif len(gi) == 1 and tags[0].kind == "f" and tags[0].block == 1 and len(go) == 3:
                # a fused projection cut into (pieces, heads, dims): each piece a group of heads
                t, (k, h, d) = tags[0], (s_out[j] for j in go)
                for c, _ in self.pieces_of(t.gid, [h * d] * k):
                    self.structure.append((c, h, node.name))
                out[go[0]], out[go[1]], out[go[2]] = _T("p", t.gid), _T("h", t.gid), _T("w", t.gid)
            elif (len(gi) == 1 and tags[0].kind == "f" and tags[0].block > 1
                  and s_out[go[0]] * tags[0].block == s_in[gi[0]]):
                out[go[0]] = _T("f", tags[0].gid)
                for j in go[1:]:
                    out[j] = _F0
            else:
                raise _Opaque(f"from {s_in} to {s_out}, which moves or splits the unit axis")
        return tuple(out)

    def head_tied(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        tied = {ra}
        changed = True
        while changed:
            changed = False
            for x, y in self.ties:
                fx_, fy = self.find(x), self.find(y)
                if (fx_ in tied) != (fy in tied):
                    tied |= {fx_, fy}
                    changed = True
        return rb in tied

    def transpose(self, node: fx.Node):
        s, shape = self.tensor(node.args[0])
        n = len(shape)
        order = list(range(n))
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        args = list(node.args[1:])
        if node.target is getattr:  # .T / .mT
            name = node.args[1]
            args = [n - 2, n - 1] if name == "mT" else []
            if name == "T":
                order = order[::-1]
        if name in ("transpose", "swapaxes", "mT") or (name == "t" and n == 2):
            d0, d1 = (_dims(a, n)[0] for a in (args if args else [0, 1]))
            order[d0], order[d1] = order[d1], order[d0]
        elif name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            order = _dims(dims, n)
        elif name == "movedim":
            src, dst = _dims(args[0], n), _dims(args[1], n)
            rest = [d for d in range(n) if d not in src]
            order = [None] * n
            for a, b in zip(src, dst):
                order[b] = a
            it = iter(rest)
            order = [o if o is not None else next(it) for o in order]
        return tuple(s[i] for i in order)

    def reduce(self, node: fx.Node):
        s, shape = self.tensor(node.args[0])
        dim = _arg(node, 1, "dim")
        keep = bool(_arg(node, 2, "keepdim", False))
        dims = list(range(len(shape))) if dim is None else _dims(dim, len(shape))
        if any(self.live(s[d]) for d in dims):
            raise _Opaque(f"over dim={dim}, which holds hidden units (only reductions over other axes are followed)")
        return tuple(_ANY if i in dims else t for i, t in enumerate(s) if keep or i not in dims)

    def elementwise(self, node: fx.Node):
        s_out = self.shapes.get(node.name)
        operands = [self.tensor(n) for n in node.all_input_nodes if isinstance(self.st(n), tuple)]
        if not isinstance(s_out, tuple):
            return None
        return self.broadcast(node, operands, s_out)

    def expand(self, node: fx.Node):
        s, shape = self.tensor(node.args[0])
        s_out = self.shapes.get(node.name)
        out = [_ANY] * (len(s_out) - len(shape))
        for t, a, b in zip(s, shape, s_out[len(s_out) - len(shape):]):
            out.append(t if a == b else _ANY)
        return tuple(out)

    def matmul(self, node: fx.Node):
        (sa, ha), (sb, hb) = self.tensor(node.args[0]), self.tensor(node.args[1])
        if len(ha) < 2 or len(hb) < 2:
            raise _Opaque("1-D operands")
        self.unify([sa[-1], sb[-2]], node)
        s_out = self.shapes[node.name]
        batch = self.broadcast(node, [(sa[:-2], ha[:-2]), (sb[:-2], hb[:-2])], s_out[:-2])
        if self.find(sb[-1].gid) != _FIXED and sb[-1].kind == "f":
            self.is_layer[self.find(sb[-1].gid)] = True  # x @ W with a parameter W: W's columns are units
        return batch + (sa[-2], sb[-1])

    def attention(self, node: fx.Node):
        (sq, hq), (sk, hk), (sv, hv) = (self.tensor(_arg(node, i, n)) for i, n in enumerate(("query", "key", "value")))
        mask = _arg(node, 3, "attn_mask")
        if isinstance(mask, fx.Node) and any(self.live(t) for t in self.tags(self.st(mask))):
            raise _Opaque("a mask that carries hidden units")
        self.unify([sq[-1], sk[-1]], node)
        self.unify([sk[-2], sv[-2]], node)
        s_out = self.shapes[node.name]
        batch = self.broadcast(node, [(sq[:-2], hq[:-2]), (sk[:-2], hk[:-2]), (sv[:-2], hv[:-2])], s_out[:-2])
        return batch + (sq[-2], sv[-1])

    def layer_norm_fn(self, node: fx.Node):
        shape = _arg(node, 1, "normalized_shape")
        k = 1 if isinstance(shape, int) else len(shape)
        return self.layer_norm(node, k, [("weight", _arg(node, 2, "weight")), ("bias", _arg(node, 3, "bias"))])

    def linear(self, node: fx.Node):
        """``F.linear(x, W, b)`` with parameters read directly: W's rows are a new group's units."""
        s, shape = self.tensor(node.args[0])
        sw, _ = self.tensor(_arg(node, 1, "weight"))
        t = self.unify([s[-1], sw[1]], node)
        if t.kind == "f":
            self.taps[t.gid].append(Tap(node.args[0].name, len(shape) - 1, t.block))
        out = sw[0]
        b = _arg(node, 2, "bias")
        if isinstance(b, fx.Node):
            out = self.unify([out, self.tensor(b)[0][0]], node)
        if out.kind == "f" and self.find(out.gid) != _FIXED:
            self.is_layer[self.find(out.gid)] = True
        return s[:-1] + (out,)

    def getitem(self, node: fx.Node):
        src, idx = node.args[0], node.args[1]
        s = self.st(src)
        if isinstance(s, _Multi):
            return s[idx] if isinstance(idx, int) else _Multi(s[idx])
        if not isinstance(s, tuple):
            return None
        idx = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(i, fx.Node) or torch.is_tensor(i) for i in idx):
            raise _Opaque("indexing with a tensor")
        used = sum(1 for i in idx if i is not None and i is not Ellipsis)
        out, axis = [], 0
        for i in idx:
            if i is None:
                out.append(_ANY)
            elif i is Ellipsis:
                n = len(s) - used
                out += list(s[axis: axis + n])
                axis += n
            elif isinstance(i, int):
                if s[axis].kind == "p":
                    return self.getitem_piece(s, axis, i, idx)
                if self.live(s[axis]):
                    raise _Opaque("picks one entry of an axis of hidden units")
                axis += 1
            elif isinstance(i, slice):
                if i == slice(None):
                    out.append(s[axis])
                elif self.live(s[axis]):
                    raise _Opaque("slices an axis of hidden units")
                else:
                    out.append(_F0)
                axis += 1
            else:
                raise _Opaque(f"index {i!r}")
        return tuple(out + list(s[axis:]))

    def join(self, node: fx.Node):
        items = node.args[0]
        if not isinstance(items, (list, tuple)) or not all(isinstance(n, fx.Node) for n in items):
            raise _Opaque("not a list of tensors")
        operands = [self.tensor(n) for n in items]
        s_out = self.shapes[node.name]
        dim = int(_arg(node, 1, "dim", 0))
        stack = node.target is torch.stack
        d = dim % (len(s_out) if stack else len(operands[0][1]))
        if not stack and any(self.live(s[d]) for s, _ in operands):
            raise _Opaque("joining tensors offsets the channels of all but the first, so their groups cannot be "
                          "permuted independently")
        rest = operands if stack else [(tuple(t for i, t in enumerate(s) if i != d),
                                        tuple(n for i, n in enumerate(h) if i != d)) for s, h in operands]
        out = list(self.broadcast(node, rest, tuple(n for i, n in enumerate(s_out) if i != d)))
        out.insert(d, _F0)
        return tuple(out)

    def split(self, node: fx.Node):
        s, shape = self.tensor(node.args[0])
        name = node.target if isinstance(node.target, str) else node.target.__name__
        default = 0
        dim = _arg(node, 1 if name == "unbind" else 2, "dim", default) % len(shape)
        shapes = self.shapes.get(node.name) or []
        if s[dim].kind == "p" and name == "unbind":
            return _Multi(self.piece(s, dim, i) for i in range(len(shapes)))
        if self.live(s[dim]):
            return self.split_units(s, dim, [sh[dim] for sh in shapes], name)
        if name == "unbind":
            return _Multi(tuple(t for i, t in enumerate(s) if i != dim) for _ in shapes)
        return _Multi(tuple(_F0 if i == dim else t for i, t in enumerate(s)) for _ in shapes)

    def split_units(self, s: tuple, dim: int, sizes: list[int], name: str) -> _Multi:
        """``chunk``/``split`` of a layer's output units (a fused query/key/value projection, a
        gated MLP): each piece becomes a group of its own, and the layer's rows are cut with it."""
        t = s[dim]
        if name == "unbind" or t.kind != "f" or t.block != 1:
            raise _Opaque("splits an axis of hidden units into single entries or out of blocks")
        return _Multi(tuple(_T("f", c) if i == dim else u for i, u in enumerate(s))
                      for c, _ in self.pieces_of(t.gid, sizes))

    def piece(self, s: tuple, dim: int, i: int) -> tuple:
        """Piece ``i`` of a value whose axis ``dim`` indexes the pieces of a split group."""
        root = s[dim].gid
        kid = self.pieces[self.find(root)][i][0]
        return tuple(_T(t.kind, kid, t.block) if t.gid == root and t.kind != "a" else t
                     for j, t in enumerate(s) if j != dim)

    def getitem_piece(self, s: tuple, axis: int, i: int, idx: tuple) -> tuple:
        if len(idx) != axis + 1 or any(j != slice(None) for j in idx[:axis]):
            raise _Opaque("indexing the pieces of a split projection together with other axes")
        return self.piece(s, axis, i)

    def pieces_of(self, gid: int, sizes: list[int]) -> list[tuple[int, int]]:
        root = self.find(gid)
        if root in self.pieces:
            if [self.size[c] for c, _ in self.pieces[root]] != sizes:
                raise _Opaque("splits one layer output in two different ways")
        else:
            if any(self.find(g) == root for g in range(1, len(self.parent)) if g != root):
                raise _Opaque("splits units that are tied to other units (split the layer output itself)")
            kids, off = [], 0
            for n in sizes:
                kids.append((self.new_group(f"{self.names[root]}[{off}:{off + n}]", n), off))
                off += n
            self.pieces[root] = kids
        return self.pieces[root]

    # ----- results -------------------------------------------------------------------------
    def finish(self, state: dict) -> PermutationSpec:
        for root, kids in self.pieces.items():  # a split group's parameters are cut among its pieces
            for c, off in kids:
                self.axes[c] += [(n, ax, blk, buf, start + off * blk) for n, ax, blk, buf, start in self.axes[root]]
                self.sources[c] += [Tap(tp.node, tp.dim, tp.block, None, tp.proj, tp.start + off * tp.block)
                                    for tp in self.taps[root] + self.sources[root]]
        for name, what, touched in self.unknown:  # (parameters that never meet a layer stay in place)
            live = [self.find(g) for g in touched if self.find(g) != _FIXED and self.is_layer[self.find(g)]]
            if live:
                raise _refuse(name, f"{what}; it reads the hidden units of group {self.names[live[0]]!r} and is not "
                                    "known to pass a permutation of them through unchanged")
        for node in self.attrs:
            owner = node.target.rsplit(".", 1)[0] if "." in node.target else ""
            if owner in self.called or any(c.startswith(node.target + ".") for c in self.called):
                raise _refuse(node.name, f"{node.target!r} is read directly as well as by the module that owns it; "
                                         "a parameter used twice cannot be permuted for both")
        changed = True
        while changed:  # a head tied to a fixed group fixes the whole tie
            changed = False
            for a, b in self.ties:
                fa, fb = self.find(a), self.find(b)
                if (fa == _FIXED) != (fb == _FIXED):
                    self.union(a, _FIXED)
                    self.union(b, _FIXED)
                    changed = True
        members: dict[int, list[int]] = defaultdict(list)
        for g in range(1, len(self.parent)):
            if self.find(g) != _FIXED and g not in self.pieces:
                members[self.find(g)].append(g)
        blocks: dict[int, int] = {}
        for gid, n, node in self.structure:
            r = self.find(gid)
            if r == _FIXED:
                continue
            if blocks.get(r, n) != n:
                raise _refuse(node, f"group {self.names[r]!r} is cut into {blocks[r]} blocks elsewhere and into {n} "
                                    "here (attention heads or GroupNorm groups); no permutation is known to keep both")
            if self.size[r] % n:
                raise _refuse(node, f"group {self.names[r]!r} of {self.size[r]} units cannot be cut into {n} blocks")
            blocks[r] = n
        tie = {r: r for r in members}

        def tfind(r):
            while tie[r] != r:
                r = tie[r]
            return r

        for a, b in self.ties:
            ra, rb = tfind(self.find(a)), tfind(self.find(b))
            if ra != rb:
                tie[max(ra, rb)] = min(ra, rb)
        sets: dict[int, list[int]] = defaultdict(list)
        for r in sorted(members):
            sets[tfind(r)].append(r)
        groups, claimed = [], defaultdict(list)
        for top, roots in sorted(sets.items()):
            if not any(self.is_layer[r] for r in roots):
                continue  # only parameters read directly and never met a layer: left in place
            h = {blocks.get(r, 1) for r in roots}
            if len(h) > 1:
                raise _refuse(self.names[top], f"attention heads of {sorted(h)} blocks are tied together")
            h = h.pop()
            parts = [self.size[r] // h for r in roots]
            bs = sum(parts)
            offs = dict(zip(roots, np.cumsum([0] + parts[:-1]).tolist()))
            single = len(roots) == 1
            axes, taps = [], []
            for r in roots:
                units = None if single else tuple((u // (self.size[r] // h)) * bs + offs[r] + u % (self.size[r] // h)
                                                  for u in range(self.size[r]))
                for g in members[r]:
                    axes += [Axis(n, ax, blk, buf, start, units) for n, ax, blk, buf, start in self.axes[g]]
                for g in members[r]:
                    for tp in (self.taps[g] or self.sources[g]):
                        taps.append(Tap(tp.node, tp.dim, tp.block, units, tp.proj, tp.start))
            name = self.names[top]
            for a in axes:
                n_units = len(a.units) if a.units is not None else h * bs
                claimed[(a.name, a.axis)].append((a.start, a.start + n_units * a.block, name))
                if state[a.name].shape[a.axis] < a.start + n_units * a.block:
                    raise _refuse(name, f"{a.name} has {state[a.name].shape[a.axis]} entries on axis {a.axis}, "
                                        f"expected {n_units} units x {a.block} from entry {a.start}")
            groups.append(Group(name, h * bs, tuple(dict.fromkeys(axes)), tuple(dict.fromkeys(taps)),
                                h if not single or h > 1 else 1, tuple(parts) if not single or h > 1 else ()))
        for (pname, axis), spans in claimed.items():
            spans = sorted(set(spans))
            for (s0, e0, g0), (s1, e1, g1) in zip(spans, spans[1:]):
                if s1 < e0:
                    raise _refuse(pname, f"axis {axis} of {pname!r} is permuted by groups {g0!r} and {g1!r}; a "
                                         "parameter used in two places cannot be permuted for both")
        def resets(m: nn.Module) -> bool:
            return isinstance(m, _RESETTING_NORMS) or (isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels)

        reset = lambda n: bool(n.users) and all(  # noqa: E731
            u.op == "call_module" and resets(self.modules[u.target]) for u in n.users)
        repair = [(n.target, d) for n, g, d, kind in self.layers
                  if self.find(g) != _FIXED and (kind == "norm" or not reset(n))]
        return PermutationSpec(tuple(groups), tuple(r for r, _ in repair), self.graph,
                               tuple(d for _, d in repair))


class _Recorder(fx.Interpreter):
    """Runs a graph and calls ``visit(node, value) -> value`` after every node."""

    def __init__(self, module: nn.Module, graph: fx.Graph, visit: Callable):
        super().__init__(module, graph=graph)
        self.visit = visit

    def run_node(self, n: fx.Node):
        return self.visit(n, super().run_node(n))


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, was in modes.items():
            m.train(was)


def _shape_of(value):
    if torch.is_tensor(value):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and any(torch.is_tensor(v) for v in value):
        return [_shape_of(v) for v in value]
    return None


def permutation_spec(module: nn.Module, example_input: torch.Tensor) -> PermutationSpec:
    """Derive the hidden-unit groups of ``module`` from its captured graph.

    ``example_input`` is a batch (at least 2 samples) of the module's input, on its device; the
    module runs on it in eval mode (to learn every value's shape) and is left unchanged. The graph
    is captured by :func:`_capture`: ``torch.fx`` symbolic tracing first, then tracing on the
    example input, which specialises Python control flow on shapes (data-dependent control flow is
    refused with its line). Returns a :class:`PermutationSpec`; raises ``ValueError`` naming the
    node, the layer or operation without a rule and the reason when the graph cannot be followed
    soundly (see the module docstring)."""
    if not torch.is_tensor(example_input) or example_input.ndim < 1 or example_input.shape[0] < 2:
        raise ValueError("example_input must be a tensor batch of at least 2 samples, got "
                         f"{tuple(example_input.shape) if torch.is_tensor(example_input) else type(example_input).__name__}")
    seen: dict[int, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            raise _refuse(name, f"parameter {name!r} is the same tensor as {seen[id(p)]!r}; "
                                "a shared parameter cannot be permuted for both uses")
        seen[id(p)] = name
    with _eval_mode(module):
        graph, how = _capture(module, example_input)
    inputs = [n.name for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"cannot derive a permutation spec: {type(module).__name__}.forward takes inputs {inputs}; "
                         "only modules with one tensor input are supported")
    shapes: dict[str, object] = {}

    def record(n, value):
        shapes[n.name] = _shape_of(value)
        return value

    with torch.no_grad(), _eval_mode(module):
        _Recorder(module, graph, record).run(example_input)
    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    try:
        spec = _Walk(module, graph, shapes).run().finish(state)
    except _Opaque as exc:
        raise ValueError(f"cannot derive a permutation spec: {exc}") from None
    return PermutationSpec(spec.groups, spec.repair_layers, graph, spec.repair_dims, how)


# =====================================================================================
# Applying permutations
# =====================================================================================
def _expand(perm: torch.Tensor, block: int) -> torch.Tensor:
    if block == 1:
        return perm
    return (perm[:, None] * block + torch.arange(block, device=perm.device)).reshape(-1)


def _local(perm: torch.Tensor, units: tuple[int, ...] | None) -> torch.Tensor:
    """The permutation of an axis that holds ``units`` (in that order): position ``j`` takes the
    entry of unit ``perm[units[j]]``, found at that unit's position on the axis."""
    if units is None:
        return perm
    u = torch.as_tensor(units, device=perm.device)
    pos = torch.full((perm.shape[0],), -1, dtype=torch.long, device=perm.device)
    pos[u] = torch.arange(len(units), device=perm.device)
    return pos[perm[u]]


def _indices(spec: PermutationSpec, sizes: dict[tuple[str, int], int], perms: dict[str, torch.Tensor],
             buffers: bool) -> dict[tuple[str, int], torch.Tensor]:
    """For each permuted (tensor, axis): the index that reorders the whole axis."""
    out: dict[tuple[str, int], torch.Tensor] = {}
    for g in spec.groups:
        p = perms[g.name]
        for a in g.axes:
            if a.buffer != buffers or (a.name, a.axis) not in sizes:
                continue
            key = (a.name, a.axis)
            if key not in out:
                out[key] = torch.arange(sizes[key], device=p.device)
            local = _expand(_local(p, a.units), a.block)
            out[key][a.start: a.start + local.shape[0]] = a.start + local
    return out


def permute(spec: PermutationSpec, fm: FlatModel, vec: torch.Tensor, buffers: dict | None,
            perms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict | None]:
    """Apply ``perms`` (group name -> permutation) to a flat vector and its buffers.

    Returns ``(vec, buffers)``, new tensors; the network they describe computes the same function.
    ``buffers=None`` skips the buffers (for callers that recompute BatchNorm statistics anyway);
    a dict must hold every running statistic of the spec's groups."""
    perms = {k: v.to(vec.device) for k, v in spec.check(perms).items()}
    params = dict(fm.params(vec))
    sizes = {(n, ax): t.shape[ax] for n, t in params.items() for ax in range(t.ndim)}
    for (name, axis), index in _indices(spec, sizes, perms, False).items():
        params[name] = params[name].index_select(axis, index)
    bufs = dict(buffers) if buffers is not None else None
    if bufs is not None:
        for g in spec.groups:
            for a in g.axes:
                if a.buffer and a.name not in bufs:
                    raise ValueError(f"buffers lack {a.name!r}, which group {g.name!r} permutes; pass all of the "
                                     "module's buffers, or None to skip them")
        sizes = {(n, ax): t.shape[ax] for n, t in bufs.items() for ax in range(t.ndim)}
        for (name, axis), index in _indices(spec, sizes, perms, True).items():
            bufs[name] = bufs[name].index_select(axis, index.to(bufs[name].device))
    return torch.cat([params[n].reshape(-1) for n in fm.names]), bufs


def permute_point(spec: PermutationSpec, fm: FlatModel, point: Point, perms: dict[str, torch.Tensor],
                  **meta) -> Point:
    """The :class:`~losslab.io.Point` with its weights and BatchNorm buffers permuted; ``meta``
    entries are added to a copy of the point's meta."""
    vec, bufs = permute(spec, fm, point.flat, point.buffers, perms)
    return Point(vec, bufs, {**point.meta, **meta})


# =====================================================================================
# Alignment
# =====================================================================================
@dataclass
class Alignment:
    """Permutations that map network B onto network A.

    ``history``: for weight matching, the similarity ``<A, P(B)>`` of all parameters before the
    first sweep and after each sweep (``len(history) - 1`` sweeps); for activation matching, the
    mean correlation of paired units before (identity) and after matching. ``converged`` is
    False only when weight matching stopped at ``max_iter`` before reaching a fixed point."""

    perms: dict[str, torch.Tensor]
    method: str
    seconds: float
    history: list[float]
    converged: bool = True


def weight_matching(spec: PermutationSpec, fm: FlatModel, vec_a: torch.Tensor, vec_b: torch.Tensor, *,
                    max_iter: int = 100, seed: int = 0, init: dict[str, torch.Tensor] | None = None) -> Alignment:
    """Git Re-Basin weight matching of B (``vec_b``) onto A (``vec_a``) by coordinate descent.

    Starts from ``init`` (default: identity). Each sweep visits the groups in an order drawn from
    ``numpy.random.default_rng(seed)``; a group's new permutation solves the linear assignment on
    the summed similarity of every parameter axis the group touches, and is kept only if it raises
    ``<A, P(B)>``. Stops after a sweep without change (``converged``) or after ``max_iter`` sweeps."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    t0 = time.perf_counter()
    pa = {n: t.double() for n, t in fm.params(vec_a).items()}
    pb = {n: t.double() for n, t in fm.params(vec_b).items()}
    perms = {k: v.to(vec_a.device) for k, v in spec.check(init if init is not None else spec.identity()).items()}
    sizes = {(n, ax): t.shape[ax] for n, t in pa.items() for ax in range(t.ndim)}
    index = _indices(spec, sizes, perms, False)

    def moved(name: str, skip: int | None = None) -> torch.Tensor:
        t = pb[name]
        for axis in range(t.ndim):
            if axis != skip and (name, axis) in index:
                t = t.index_select(axis, index[(name, axis)])
        return t

    def similarity(names: Iterable[str]) -> float:
        return sum(float(torch.vdot(pa[n].reshape(-1), moved(n).reshape(-1))) for n in names)

    touching = {g.name: list(dict.fromkeys(a.name for a in g.axes if not a.buffer)) for g in spec.groups}
    history = [similarity(fm.names)]
    rng = np.random.default_rng(seed)
    converged = False
    for _ in range(max_iter):
        changed = False
        for i in rng.permutation(len(spec.groups)):
            g = spec.groups[i]
            gain = torch.zeros(g.size, g.size, dtype=torch.float64, device=vec_a.device)
            for a in g.axes:
                if not a.buffer:
                    n = (len(a.units) if a.units is not None else g.size)
                    wa = pa[a.name].narrow(a.axis, a.start, n * a.block).movedim(a.axis, 0).reshape(n, -1)
                    wb = moved(a.name, a.axis).narrow(a.axis, a.start, n * a.block).movedim(a.axis, 0).reshape(n, -1)
                    if a.units is None:
                        gain += wa @ wb.T
                    else:
                        u = torch.as_tensor(a.units, device=gain.device)
                        gain[u[:, None], u[None, :]] += wa @ wb.T
            cols = _assign(gain.cpu().numpy(), *g.layout)
            new, old = torch.as_tensor(cols, device=vec_a.device), perms[g.name]
            if torch.equal(new, old):
                continue
            before = similarity(touching[g.name])
            perms[g.name] = new
            index = _indices(spec, sizes, perms, False)
            if similarity(touching[g.name]) > before + 1e-12 * max(1.0, abs(before)):
                changed = True
            else:
                perms[g.name] = old
                index = _indices(spec, sizes, perms, False)
        history.append(similarity(fm.names))
        if not changed:
            converged = True
            break
    return Alignment({k: v.cpu() for k, v in perms.items()}, "weight_matching", time.perf_counter() - t0, history,
                     converged)


class _Network:
    """A scratch copy of the module at one flat vector, run node by node through the spec's graph.

    Dropout is off. With ``buffers`` the BatchNorm layers use them (eval mode); without, they
    normalise with the statistics of the batch they see (train mode), as a recompute would."""

    def __init__(self, spec: PermutationSpec, fm: FlatModel, vec: torch.Tensor, buffers: dict | None = None):
        self.spec = spec
        self.module = fm.load_into(vec, copy.deepcopy(fm.module).to(vec.device), buffers)
        self.module.eval()
        if buffers is None:
            for m in self.module.modules():
                if isinstance(m, _BatchNorm):
                    m.train()

    @torch.no_grad()
    def run(self, x: torch.Tensor, visit: Callable) -> None:
        _Recorder(self.module, self.spec.graph, visit).run(x)

    def values(self, x: torch.Tensor, names: set[str]) -> dict[str, torch.Tensor]:
        """Copies of the values of the named graph nodes on ``x``."""
        kept = {}

        def keep(n, value):
            if n.name in names:
                kept[n.name] = value.detach().clone()
            return value

        self.run(x, keep)
        return kept


def _units(value: torch.Tensor, dim: int, n: int, block: int) -> torch.Tensor:
    """The ``n`` units on axis ``dim`` of ``value`` as columns: ``[samples * positions, n]``."""
    v = value.movedim(dim, -1)
    v = v.reshape(*v.shape[:-1], n, block).movedim(-1, 0)
    return v.reshape(-1, n).double()


def _tap_value(net: "_Network", values: dict, tap: Tap, n: int) -> torch.Tensor:
    v = values[tap.node]
    if tap.proj is not None:
        w_name, b_name, start, rows = tap.proj
        w = net.module.get_parameter(w_name)[start: start + rows]
        b = net.module.get_parameter(b_name)[start: start + rows] if b_name else None
        v = F.linear(v, w, b)
    return v.narrow(tap.dim, tap.start, n * tap.block)


class _Correlation:
    """Streaming Pearson correlation between the units of A and the units of B."""

    def __init__(self):
        self.n, self.sums = 0, None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        terms = (a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), a.T @ b)
        self.sums = terms if self.sums is None else tuple(s + t for s, t in zip(self.sums, terms))
        self.n += a.shape[0]

    def matrix(self) -> torch.Tensor:
        sa, sb, saa, sbb, sab = (s / self.n for s in self.sums)
        cov = sab - sa[:, None] * sb[None, :]
        std_a = (saa - sa * sa).clamp_min(0).sqrt()
        std_b = (sbb - sb * sb).clamp_min(0).sqrt()
        return cov / (std_a[:, None] * std_b[None, :]).clamp_min(1e-12)


def activation_matching(spec: PermutationSpec, fm: FlatModel, vec_a: torch.Tensor, vec_b: torch.Tensor,
                        x: torch.Tensor, buffers_a: dict | None = None, buffers_b: dict | None = None,
                        batch_size: int = 256) -> Alignment:
    """Match the units of B to those of A by the correlation of their activations on ``x``.

    The activations of a group are the inputs of the next layers that read it (after BatchNorm,
    the nonlinearity and pooling), over every sample and spatial position of ``x``, run in
    batches of ``batch_size`` with dropout off. BatchNorm networks use the given buffers (default:
    statistics recomputed on ``x``). One linear assignment per group maximises the summed
    correlation of paired units (keeping a group's blocks and parts); units no layer reads are seen
    at the output of the layer that makes them. A group seen nowhere keeps the identity. Units that are
    constant on ``x`` (dead ReLUs) correlate with nothing and are paired arbitrarily among
    themselves; their order does not change the outputs on ``x``, but it does change the distance
    in weight space, so use data on which the units are active."""
    t0 = time.perf_counter()
    if fm.has_bn:
        buffers_a = buffers_a or fm.recompute_bn(vec_a, x)
        buffers_b = buffers_b or fm.recompute_bn(vec_b, x)
    net_a, net_b = _Network(spec, fm, vec_a, buffers_a or {}), _Network(spec, fm, vec_b, buffers_b or {})
    taps = {t.node for g in spec.groups for t in g.taps}
    corr = {(g.name, t.units): _Correlation() for g in spec.groups for t in g.taps}
    with torch.no_grad():
        for xb in x.split(batch_size):
            va, vb = net_a.values(xb, taps), net_b.values(xb, taps)
            for g in spec.groups:
                for t in g.taps:
                    n = len(t.units) if t.units is not None else g.size
                    corr[(g.name, t.units)].add(_units(_tap_value(net_a, va, t, n), t.dim, n, t.block),
                                                _units(_tap_value(net_b, vb, t, n), t.dim, n, t.block))
    perms, before, after = spec.identity(), [], []
    for g in spec.groups:
        keys = [k for k in corr if k[0] == g.name]
        if not keys:
            continue
        m = torch.zeros(g.size, g.size, dtype=torch.float64)
        seen = torch.zeros(g.size, dtype=torch.bool)
        for key in keys:
            c = corr[key].matrix().cpu()
            u = torch.arange(g.size) if key[1] is None else torch.as_tensor(key[1])
            m[u[:, None], u[None, :]] += c
            seen[u] = True
        perms[g.name] = torch.as_tensor(_assign(m.numpy(), *g.layout))
        before.append(m.diagonal()[seen])
        after.append(m[torch.arange(g.size), perms[g.name]][seen])
    history = [float(torch.cat(before).mean()), float(torch.cat(after).mean())] if before else [math.nan, math.nan]
    return Alignment(perms, "activation_matching", time.perf_counter() - t0, history)


def align(spec: PermutationSpec, fm: FlatModel, a: Point, b: Point, method: str, x: torch.Tensor | None = None, *,
          seed: int = 0, max_iter: int = 100, batch_size: int = 256) -> Alignment:
    """Align point ``b`` onto point ``a`` with ``method`` (one of :data:`METHODS`); activation
    matching needs the data tensor ``x`` (a fixed, un-augmented training subset)."""
    if method == "weight_matching":
        return weight_matching(spec, fm, a.flat, b.flat, max_iter=max_iter, seed=seed)
    if method == "activation_matching":
        if x is None:
            raise ValueError("activation_matching needs a data tensor x (for example EvalData.bn_x)")
        return activation_matching(spec, fm, a.flat, b.flat, x, a.buffers or None, b.buffers or None, batch_size)
    raise ValueError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")


# =====================================================================================
# REPAIR and the straight line
# =====================================================================================
def _channel_stats(y: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    u = y.movedim(dim, -1).reshape(-1, y.shape[dim]).double()
    return u.mean(0), u.std(0, unbiased=False)


def unit_statistics(spec: PermutationSpec, fm: FlatModel, vec: torch.Tensor, x: torch.Tensor
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and standard deviation (float64) of the output of every layer in
    ``spec.repair_layers`` at ``vec`` on all of ``x`` in one batch (dropout off, BatchNorm on the
    batch's statistics)."""
    stats = {}
    layers = dict(zip(spec.repair_layers, spec.repair_dims or (1,) * len(spec.repair_layers)))

    def measure(n, y):
        if n.op == "call_module" and n.target in layers:
            stats[n.target] = _channel_stats(y, layers[n.target])
        return y

    _Network(spec, fm, vec).run(x, measure)
    return stats


class Repair:
    """REPAIR for the straight line between ``vec_a`` and ``vec_b`` (B already aligned to A).

    The endpoint statistics of every REPAIR layer are measured once on ``x`` (a fixed data
    subset); calling the object with an interpolated vector and its ``alpha`` returns the
    corrected vector (see the module docstring)."""

    def __init__(self, spec: PermutationSpec, fm: FlatModel, vec_a: torch.Tensor, vec_b: torch.Tensor,
                 x: torch.Tensor, eps: float = 1e-8):
        for name in spec.repair_layers:
            if fm.module.get_submodule(name).bias is None:
                raise ValueError(f"REPAIR needs a bias in layer {name!r} to absorb the mean shift, and no BatchNorm "
                                 "or InstanceNorm follows it; it was built with bias=False")
        self.spec, self.fm, self.x, self.eps = spec, fm, x, eps
        self.ends = (unit_statistics(spec, fm, vec_a, x), unit_statistics(spec, fm, vec_b, x))

    @property
    def policy(self) -> str:
        """What the correction does, for the output tables."""
        text = (f"REPAIR: output mean/std of {len(self.spec.repair_layers)} hidden layer(s) set to the interpolated "
                f"endpoint values on a fixed {self.x.shape[0]}-sample training subset")
        norms = sum(isinstance(self.fm.module.get_submodule(n), (nn.LayerNorm, nn.GroupNorm))
                    for n in self.spec.repair_layers)
        if norms:
            text += (f", {norms} of them LayerNorm/GroupNorm outputs (corrected through their affine parameters: "
                     "these normalise each sample, not each unit over the data)")
        if self.fm.has_bn:
            text += "; layers feeding a BatchNorm: BN statistics recomputed (what REPAIR reduces to there)"
        return text

    def targets(self, alpha: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Interpolated endpoint mean and std of every REPAIR layer's channels."""
        a, b = self.ends
        return {k: ((1 - alpha) * a[k][0] + alpha * b[k][0], (1 - alpha) * a[k][1] + alpha * b[k][1]) for k in a}

    def __call__(self, vec: torch.Tensor, alpha: float) -> torch.Tensor:
        if not self.spec.repair_layers:
            return vec
        targets = self.targets(alpha)
        dims = dict(zip(self.spec.repair_layers, self.spec.repair_dims or (1,) * len(self.spec.repair_layers)))
        net = _Network(self.spec, self.fm, vec)

        def correct(n, y):
            if n.op != "call_module" or n.target not in targets:
                return y
            dim = dims[n.target] % y.ndim
            mean, std = _channel_stats(y, dim)
            t_mean, t_std = targets[n.target]
            scale = t_std / std.clamp_min(self.eps)
            shift = t_mean - mean * scale
            layer = net.module.get_submodule(n.target)
            layer.weight.mul_(scale.to(layer.weight.dtype).view(-1, *[1] * (layer.weight.ndim - 1)))
            layer.bias.mul_(scale.to(layer.bias.dtype)).add_(shift.to(layer.bias.dtype))
            view = [1] * y.ndim
            view[dim] = -1
            return y * scale.to(y.dtype).view(view) + shift.to(y.dtype).view(view)

        net.run(self.x, correct)
        return self.fm.flatten(net.module)


def interpolate(vec_a: torch.Tensor, vec_b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * vec_a + alpha * vec_b`` (exactly ``vec_a`` at 0 and ``vec_b`` at 1)."""
    return (1 - alpha) * vec_a + alpha * vec_b


@torch.no_grad()
def line_rows(fm: FlatModel, vec_a: torch.Tensor, vec_b: torch.Tensor, alphas: Iterable[float], ev, task: str,
              correct: Callable[[torch.Tensor, float], torch.Tensor] | None = None,
              batch_size: int = 4096, **labels) -> list[dict]:
    """Loss, accuracy and error along the straight line from ``vec_a`` to ``vec_b``.

    At each ``alpha`` the interpolated vector is optionally passed through
    ``correct(vec, alpha)`` (a :class:`Repair`), then evaluated on the fixed subsets of ``ev``
    (an :class:`~losslab.data.EvalData`) with BatchNorm statistics recomputed on ``ev.bn_x``.
    Returns one dict per (alpha, split), carrying ``labels`` as extra columns."""
    policy = fm.bn_policy(ev.bn_x.shape[0])
    rows = []
    for alpha in alphas:
        vec = interpolate(vec_a, vec_b, float(alpha))
        if correct is not None:
            vec = correct(vec, float(alpha))
        for split, m in evaluate_point(fm, vec, ev, task, batch_size=batch_size).items():
            rows.append({**labels, "alpha": float(alpha), "split": split, "loss": m["loss"],
                         "accuracy": m["accuracy"], "error": 1.0 - m["accuracy"], "bn_policy": policy})
    return rows


def compare_lines(spec: PermutationSpec, fm: FlatModel, a: Point, b: Point, ev, task: str, alphas: Iterable[float],
                  aligned: dict[str, torch.Tensor], repair: bool = True,
                  batch_size: int = 4096) -> pd.DataFrame:
    """The straight line from A to B, naive and after each alignment, as long-format rows.

    ``aligned`` maps an alignment name (e.g. ``"weight_matching"``) to B's weights after it
    (``permute(spec, fm, b.flat, None, perms)[0]``, or an aligned checkpoint's ``flat``).
    Columns: ``alignment`` (``none`` for the naive line), ``method`` (``naive``, ``aligned``,
    ``aligned+repair``), ``alpha``, ``split``, ``loss``, ``accuracy``, ``error``, ``bn_policy``,
    ``correction``. REPAIR statistics come from ``ev.bn_x``."""
    alphas = [float(t) for t in alphas]
    rows = line_rows(fm, a.flat, b.flat, alphas, ev, task, batch_size=batch_size,
                     alignment="none", method="naive", correction="none")
    for name, vec_b in aligned.items():
        rows += line_rows(fm, a.flat, vec_b, alphas, ev, task, batch_size=batch_size,
                          alignment=name, method="aligned", correction="none")
        if repair:
            fix = Repair(spec, fm, a.flat, vec_b, ev.bn_x)
            rows += line_rows(fm, a.flat, vec_b, alphas, ev, task, correct=fix, batch_size=batch_size,
                              alignment=name, method="aligned+repair", correction=fix.policy)
    return pd.DataFrame(rows)


def barriers(rows: pd.DataFrame, metrics: Iterable[str] = ("loss", "error")) -> pd.DataFrame:
    """Per (alignment, method, split, metric): ``barrier`` (largest value along the line minus
    the mean of its two endpoints), ``midpoint`` (value at alpha = 0.5 minus that mean; NaN when
    0.5 is not on the grid) and ``endpoint_mean`` (see :func:`losslab.summaries.barriers`)."""
    return summaries.barriers(rows, ("alignment", "method"), "alpha", metrics)


# Called, this module is the API function of its name (losslab.api; docs/api.md).
from ._callable import make_callable  # noqa: E402

make_callable(__name__)
