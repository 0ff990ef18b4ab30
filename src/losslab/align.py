"""Permutation alignment of two networks: Git Re-Basin weight matching, activation matching, REPAIR.

Hidden units of a network can be permuted without changing the function it computes. Two
independently trained networks may therefore be far apart in weight space only because their
units are listed in different orders. This module finds the orders that bring network B onto
network A and evaluates the straight line between A and the aligned B.

**Permutation specs are derived, not written.** :func:`permutation_spec` traces the module with
``torch.fx`` and follows every value through the graph. Each Linear/Conv output starts a
hidden-unit *group*; the group collects the layer's weight rows and bias, the BatchNorm weight,
bias and running statistics that act on those channels, and the input columns of every next
layer that reads them. Per-channel operations (activations, dropout, identity, max/avg/adaptive
pooling, reshapes that keep the channel axis, reductions over spatial axes) pass a group through,
and so does a depthwise convolution, whose weights and bias join the group;
a flatten of ``C x H x W`` features turns the channel permutation into blocks of ``H*W``
features; element-wise sums and products (residual additions) tie their operands into one group.
Whatever reaches the network output is never permuted, so the output layer keeps its order.

An operation the walk does not know (a concatenation, a reshape that moves the channel axis, a
layer norm, a grouped convolution, ...) is allowed only where the channels it touches are not
permuted anyway (on the input, or after the output layer); anywhere else the spec is refused
with a ``ValueError`` naming the node and the reason, as is a module called twice, a parameter
shared by two modules and a module that cannot be traced. Nothing is aligned silently wrong.

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

**Barriers after alignment.** :func:`compare_lines` evaluates the straight line
``(1 - alpha) A + alpha B`` for the naive pair, for each aligned pair and, as an option, for each
aligned pair with REPAIR (Jordan et al.), with BatchNorm statistics recomputed at every point
(the losslab policy). It returns long-format rows; :func:`barriers` summarises them.

**REPAIR** (:class:`Repair`) corrects the variance collapse of interpolated networks: for each
hidden Linear/Conv layer, the per-channel mean and standard deviation of its output
(pre-activation) in the interpolated network are set to the interpolation of the two endpoints'
values, measured on a fixed data subset, layer after layer in graph order. The correction
``y -> (y - mean) * target_std / std + target_mean`` is folded into the layer's weight and bias,
so the result is again a flat vector. For a layer whose output goes straight into a BatchNorm,
this rescaling is undone by the BatchNorm once its statistics are recomputed, and the recompute
alone gives each BatchNorm output channel the mean ``beta_alpha`` and standard deviation
``|gamma_alpha|`` of the interpolated affine parameters: the interpolated endpoint values (the
mean exactly, the standard deviation whenever ``gamma`` has one sign at both ends). So in
BatchNorm networks REPAIR reduces to the BatchNorm reset that every losslab evaluation already
does; those layers are not rescaled, and a network whose every hidden layer feeds a BatchNorm
gets identical ``aligned`` and ``aligned+repair`` lines.
"""
from __future__ import annotations

import contextlib
import copy
import math
import operator
import time
from collections import defaultdict
from dataclasses import dataclass, field
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
        torch.relu, torch.relu_, torch.tanh, torch.sigmoid, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu,
        F.celu, F.gelu, F.silu, F.mish, F.tanh, F.sigmoid, F.softplus, F.hardtanh, F.hardswish, F.hardsigmoid,
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    ), ("relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_", "contiguous", "clone", "to", "float")),
    **_rule("reshape", (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze),
            ("flatten", "view", "reshape", "squeeze", "unsqueeze")),
    **_rule("reduce", (torch.mean, torch.sum, torch.amax, torch.amin), ("mean", "sum", "amax", "amin")),
    **_rule("elementwise", (
        operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
        operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    ), ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_")),
    **_rule("metadata", methods=("size", "dim")),
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3,
    F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
    F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
}


# =====================================================================================
# Permutation specs
# =====================================================================================
@dataclass(frozen=True)
class Axis:
    """One axis of one parameter or buffer that a group permutes.

    The axis has ``size * block`` entries: ``block`` consecutive entries per unit (``block > 1``
    where a ``C x H x W`` feature map was flattened into a Linear layer's input)."""

    name: str
    axis: int
    block: int = 1
    buffer: bool = False


@dataclass(frozen=True)
class Group:
    """A set of hidden units permuted together.

    ``axes`` are every parameter/buffer axis the permutation reorders; ``taps`` are the graph
    values ``(node name, block)`` through which the group's units feed a next layer (the
    activations :func:`activation_matching` correlates)."""

    name: str
    size: int
    axes: tuple[Axis, ...]
    taps: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PermutationSpec:
    """The hidden-unit groups of one architecture, derived by :func:`permutation_spec`.

    ``repair_layers`` are the hidden Linear/Conv layers (module names) whose outputs REPAIR
    rescales: all hidden layers whose output does not go straight into a BatchNorm. ``graph`` is
    the traced ``torch.fx`` graph of the module, used to run it layer by layer."""

    groups: tuple[Group, ...]
    repair_layers: tuple[str, ...]
    graph: fx.Graph = field(repr=False, compare=False)

    def identity(self) -> dict[str, torch.Tensor]:
        """The identity permutation of every group."""
        return {g.name: torch.arange(g.size) for g in self.groups}

    def random(self, seed: int) -> dict[str, torch.Tensor]:
        """A uniformly random permutation of every group, from a seeded generator."""
        gen = torch.Generator().manual_seed(seed)
        return {g.name: torch.randperm(g.size, generator=gen) for g in self.groups}

    def check(self, perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``perms`` as long tensors after checking there is one permutation of the right
        size per group; raise ``ValueError`` naming the group otherwise."""
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
            out[g.name] = p
        return out


@dataclass(frozen=True)
class _Chan:
    """How a value's axis 1 relates to the groups: ``block`` entries per unit of group ``gid``."""

    gid: int
    block: int = 1


def _refuse(node: str, reason: str) -> ValueError:
    """The error for a graph that cannot be followed soundly, naming the node and the reason."""
    return ValueError(f"cannot derive a permutation spec: node {node!r}: {reason}; "
                    "refusing rather than aligning the network silently wrong")


class _Walk:
    """One pass over the traced graph that builds the groups with a union-find."""

    def __init__(self, module: nn.Module, graph: fx.Graph, shapes: dict[str, tuple | None]):
        self.modules = dict(module.named_modules())
        self.graph, self.shapes = graph, shapes
        self.parent, self.size, self.names = [_FIXED], [0], [""]
        self.axes: dict[int, list[Axis]] = defaultdict(list)
        self.taps: dict[int, list[tuple[str, int]]] = defaultdict(list)
        self.state: dict[str, _Chan | None] = {}
        self.unknown: list[tuple[str, str, list[int]]] = []  # (node, what, groups it touches)
        self.layers: list[tuple[fx.Node, int]] = []
        self.called: set[str] = set()
        self.attrs: list[fx.Node] = []
        self.tail = self.output_tail()

    def output_tail(self) -> set[str]:
        """Nodes whose value reaches the network output without passing a Linear/Conv layer:
        their channels are output channels, which are never permuted."""
        out = [n for n in self.graph.nodes if n.op == "output"]
        tail, todo = set(), list(out)
        while todo:
            n = todo.pop()
            if n.name in tail:
                continue
            tail.add(n.name)
            if not (n.op == "call_module" and isinstance(self.modules[n.target], (nn.Linear, nn.modules.conv._ConvNd))):
                todo.extend(n.all_input_nodes)
        return tail

    # ----- union-find over group ids -----------------------------------------------------
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def new_group(self, name: str, size: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.names.append(name)
        return len(self.parent) - 1

    def union(self, a: int, b: int) -> None:
        ra, rb = sorted((self.find(a), self.find(b)))  # the older group (or _FIXED) stays the root
        if ra != rb:
            self.parent[rb] = ra

    # ----- the walk ----------------------------------------------------------------------
    def run(self) -> PermutationSpec:
        for node in self.graph.nodes:
            self.state[node.name] = self.visit(node)
        return self.finish()

    def tensor_inputs(self, node: fx.Node) -> list[tuple[fx.Node, _Chan]]:
        return [(n, self.state[n.name]) for n in node.all_input_nodes if self.state.get(n.name) is not None]

    def out(self, node: fx.Node, chan: _Chan) -> _Chan | None:
        return chan if self.shapes.get(node.name) is not None else None

    def visit(self, node: fx.Node) -> _Chan | None:
        if node.op == "placeholder":
            return _Chan(_FIXED)
        if node.op == "get_attr":
            self.attrs.append(node)
            return self.out(node, _Chan(_FIXED))
        if node.op == "output":
            for _, c in self.tensor_inputs(node):
                self.union(c.gid, _FIXED)
            return None
        if node.op == "call_module":
            mod = self.modules[node.target]
            if any(True for _ in mod.parameters(recurse=False)) or any(True for _ in mod.buffers(recurse=False)):
                if node.target in self.called:
                    raise _refuse(node.name, f"module {node.target!r} is called more than once; its parameters would be "
                                             "shared by two places in the network and cannot be permuted for both")
                self.called.add(node.target)
            return self.visit_module(node, mod)
        return self.visit_call(node)

    def label(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"module {node.target!r} ({type(self.modules[node.target]).__name__})"
        if node.op == "call_method":
            return f"tensor method .{node.target}()"
        return f"function {getattr(node.target, '__name__', node.target)}"

    def visit_module(self, node: fx.Node, mod: nn.Module) -> _Chan | None:
        if isinstance(mod, nn.Linear) or type(mod) in _CONVS:
            return self.layer(node, mod)
        if isinstance(mod, _BatchNorm):
            return self.norm(node, mod)
        if isinstance(mod, _POINTWISE_MODULES):
            return self.pointwise(node)
        if type(mod) in _POOL_MODULES:
            return self.spatial(node, _POOL_MODULES[type(mod)])
        if isinstance(mod, (nn.Flatten, nn.Unflatten)):
            return self.reshape(node)
        return self.opaque(node, self.label(node))

    def visit_call(self, node: fx.Node) -> _Chan | None:
        key = node.target if node.op == "call_function" else ("method", node.target)
        rule = _CALL_RULES.get(key)
        if isinstance(rule, int):
            return self.spatial(node, rule)
        if rule == "metadata" or (key is getattr and len(node.args) == 2 and node.args[1] in _METADATA_ATTRS):
            return None
        if rule is not None:
            return getattr(self, rule)(node)
        if key in (torch.cat, torch.concat, torch.stack):
            return self.opaque(node, f"{self.label(node)} (joining tensors offsets the channels of all but the first, "
                                     "so their groups cannot be permuted independently)")
        return self.opaque(node, self.label(node))

    # ----- rules ---------------------------------------------------------------------------
    def opaque(self, node: fx.Node, what: str) -> _Chan | None:
        """An operation not known to act on each channel separately. After the last layer (in the
        output tail) it fixes the channels it reads; elsewhere it is allowed only where every channel
        it reads stays in place for another reason (checked in :meth:`finish`). Its output is never
        permuted."""
        touched = [c.gid for _, c in self.tensor_inputs(node)]
        if node.name in self.tail:
            for g in touched:
                self.union(g, _FIXED)
        elif touched:
            self.unknown.append((node.name, what, touched))
        return self.out(node, _Chan(_FIXED))

    def single(self, node: fx.Node) -> tuple[fx.Node, _Chan] | None:
        ins = self.tensor_inputs(node)
        return ins[0] if len(ins) == 1 else None

    def layer(self, node: fx.Node, mod: nn.Module) -> _Chan | None:
        one = self.single(node)
        shape = self.shapes.get(one[0].name) if one else None
        if one is None or shape is None:
            return self.opaque(node, f"{self.label(node)} with other than one tensor input")
        if isinstance(mod, nn.Linear) and len(shape) != 2:
            return self.opaque(node, f"{self.label(node)} on a {len(shape)}-D tensor (only [batch, features] "
                                     "inputs are followed)")
        depthwise = type(mod) in _CONVS and mod.groups == mod.in_channels == mod.out_channels
        if type(mod) in _CONVS and ((mod.groups != 1 and not depthwise) or len(shape) != _CONVS[type(mod)] + 2):
            return self.opaque(node, f"{self.label(node)} with groups={mod.groups} on a {len(shape)}-D tensor (only "
                                     "ungrouped or depthwise convolutions on batched inputs are followed)")
        src, c = one
        self.taps[c.gid].append((src.name, c.block))
        if depthwise:  # output channel i is computed from input channel i alone: the group passes through
            self.axes[c.gid] += [Axis(f"{node.target}.{p}", 0, c.block) for p in ("weight", "bias")
                                 if getattr(mod, p) is not None]
            self.layers.append((node, c.gid))
            return c
        self.axes[c.gid].append(Axis(f"{node.target}.weight", 1, c.block))
        g = self.new_group(node.target, mod.weight.shape[0])
        self.axes[g].append(Axis(f"{node.target}.weight", 0))
        if mod.bias is not None:
            self.axes[g].append(Axis(f"{node.target}.bias", 0))
        self.layers.append((node, g))
        return _Chan(g)

    def norm(self, node: fx.Node, mod: _BatchNorm) -> _Chan | None:
        one = self.single(node)
        if one is None:
            return self.opaque(node, f"{self.label(node)} with other than one tensor input")
        c = one[1]
        for attr, is_buffer in (("weight", False), ("bias", False), ("running_mean", True), ("running_var", True)):
            if getattr(mod, attr, None) is not None:
                self.axes[c.gid].append(Axis(f"{node.target}.{attr}", 0, c.block, is_buffer))
        return c

    def pointwise(self, node: fx.Node) -> _Chan | None:
        one = self.single(node)
        if one is None or self.shapes.get(node.name) != self.shapes.get(one[0].name):
            return self.opaque(node, f"{self.label(node)} with other than one tensor input of its own shape")
        return one[1]

    def spatial(self, node: fx.Node, dims: int) -> _Chan | None:
        one = self.single(node)
        s_in = self.shapes.get(one[0].name) if one else None
        s_out = self.shapes.get(node.name)
        if s_in is None or s_out is None or len(s_in) != dims + 2 or len(s_out) != len(s_in) or s_out[:2] != s_in[:2]:
            return self.opaque(node, f"{self.label(node)} that does not keep the [batch, channel] axes")
        return one[1]

    def reshape(self, node: fx.Node) -> _Chan | None:
        one = self.single(node)
        s_in = self.shapes.get(one[0].name) if one else None
        s_out = self.shapes.get(node.name)
        if s_in is not None and s_out is not None and len(s_in) >= 2:
            c = one[1]
            if len(s_out) >= 2 and s_out[:2] == s_in[:2]:
                return c  # the channel axis is untouched
            if len(s_out) == 2 and s_out[0] == s_in[0]:
                return _Chan(c.gid, c.block * math.prod(s_in[2:]))  # flatten: channel-major blocks
        return self.opaque(node, f"{self.label(node)} from {s_in} to {s_out}, which moves or splits the channel axis")

    def reduce(self, node: fx.Node) -> _Chan | None:
        one = self.single(node)
        s_in = self.shapes.get(one[0].name) if one else None
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if s_in is not None and dim is not None:
            dims = {d % len(s_in) for d in ((dim,) if isinstance(dim, int) else dim)}
            if not dims & {0, 1}:
                return one[1]
        return self.opaque(node, f"{self.label(node)} over dim={dim}, which is not spatial-only")

    def elementwise(self, node: fx.Node) -> _Chan | None:
        s_out = self.shapes.get(node.name)
        tied = []
        for src, c in self.tensor_inputs(node):
            s = self.shapes[src.name]
            if math.prod(s) == 1 or (s_out is not None and len(s) == len(s_out) >= 2 and s[1] == 1):
                continue  # the same value for every channel
            if s_out is None or len(s) != len(s_out) or len(s) < 2 or s[1] != s_out[1]:
                return self.opaque(node, f"{self.label(node)} broadcasting a {s} tensor against {s_out}")
            tied.append(c)
        if not tied:
            return self.out(node, _Chan(_FIXED))
        live = {c.block for c in tied if self.find(c.gid) != _FIXED}
        if len(live) > 1:
            raise _refuse(node.name, f"{self.label(node)} combines channels laid out in different blocks {sorted(live)}")
        for c in tied[1:]:
            self.union(tied[0].gid, c.gid)
        return _Chan(tied[0].gid, live.pop() if live else 1)

    # ----- results -------------------------------------------------------------------------
    def finish(self) -> PermutationSpec:
        for name, what, touched in self.unknown:
            live = [self.find(g) for g in touched if self.find(g) != _FIXED]
            if live:
                raise _refuse(name, f"{what} reads the hidden units of group {self.names[live[0]]!r} and is not known "
                                    "to act on each channel separately")
        for node in self.attrs:
            owner = node.target.rsplit(".", 1)[0] if "." in node.target else ""
            if owner in self.called or any(c.startswith(node.target + ".") for c in self.called):
                raise _refuse(node.name, f"{node.target!r} is read directly as well as by the module that owns it; "
                                         "a parameter used twice cannot be permuted for both uses")
        members: dict[int, list[int]] = defaultdict(list)
        for g in range(1, len(self.parent)):
            if self.find(g) != _FIXED:
                members[self.find(g)].append(g)
        groups = []
        for root in sorted(members):
            axes = [a for g in members[root] for a in self.axes[g]]
            taps = list(dict.fromkeys(t for g in members[root] for t in self.taps[g]))
            groups.append(Group(self.names[root], self.size[root], tuple(axes), tuple(taps)))
        users_are_bn = lambda n: bool(n.users) and all(  # noqa: E731
            u.op == "call_module" and isinstance(self.modules[u.target], _BatchNorm) for u in n.users)
        repair = tuple(n.target for n, g in self.layers if self.find(g) != _FIXED and not users_are_bn(n))
        return PermutationSpec(tuple(groups), repair, self.graph)


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


def permutation_spec(module: nn.Module, example_input: torch.Tensor) -> PermutationSpec:
    """Derive the hidden-unit groups of ``module`` from a ``torch.fx`` trace.

    ``example_input`` is a batch (at least 2 samples) of the module's input, on its device; the
    module runs once on it in eval mode (to learn every value's shape) and is left unchanged.
    Returns a :class:`PermutationSpec`; raises ``ValueError`` naming the node and the reason when
    the graph cannot be followed soundly (see the module docstring)."""
    if not torch.is_tensor(example_input) or example_input.ndim < 1 or example_input.shape[0] < 2:
        raise ValueError("example_input must be a tensor batch of at least 2 samples, got "
                         f"{tuple(example_input.shape) if torch.is_tensor(example_input) else type(example_input).__name__}")
    seen: dict[int, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            raise _refuse(name, f"parameter {name!r} is the same tensor as {seen[id(p)]!r}; "
                                "a shared parameter cannot be permuted for both uses")
        seen[id(p)] = name
    try:
        graph = fx.Tracer().trace(module)
    except Exception as exc:
        raise ValueError(f"cannot derive a permutation spec: torch.fx could not trace {type(module).__name__} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    inputs = [n.name for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"cannot derive a permutation spec: {type(module).__name__}.forward takes inputs {inputs}; "
                         "only modules with one tensor input are supported")
    shapes: dict[str, tuple | None] = {}

    def record(n, value):
        shapes[n.name] = tuple(value.shape) if torch.is_tensor(value) else None
        return value

    with torch.no_grad(), _eval_mode(module):
        _Recorder(module, graph, record).run(example_input)
    spec = _Walk(module, graph, shapes).run()
    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    for g in spec.groups:
        for a in g.axes:
            if state[a.name].shape[a.axis] != g.size * a.block:
                raise _refuse(g.name, f"{a.name} has {state[a.name].shape[a.axis]} entries on axis {a.axis}, "
                                      f"expected {g.size} units x {a.block}")
    return spec


# =====================================================================================
# Applying permutations
# =====================================================================================
def _expand(perm: torch.Tensor, block: int) -> torch.Tensor:
    if block == 1:
        return perm
    return (perm[:, None] * block + torch.arange(block, device=perm.device)).reshape(-1)


def permute(spec: PermutationSpec, fm: FlatModel, vec: torch.Tensor, buffers: dict | None,
            perms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict | None]:
    """Apply ``perms`` (group name -> permutation) to a flat vector and its buffers.

    Returns ``(vec, buffers)``, new tensors; the network they describe computes the same function.
    ``buffers=None`` skips the buffers (for callers that recompute BatchNorm statistics anyway);
    a dict must hold every running statistic of the spec's groups."""
    perms = spec.check(perms)
    params = dict(fm.params(vec))
    bufs = dict(buffers) if buffers is not None else None
    for g in spec.groups:
        p = perms[g.name].to(vec.device)
        for a in g.axes:
            if not a.buffer:
                params[a.name] = params[a.name].index_select(a.axis, _expand(p, a.block))
            elif bufs is not None:
                if a.name not in bufs:
                    raise ValueError(f"buffers lack {a.name!r}, which group {g.name!r} permutes; pass all of the "
                                     "module's buffers, or None to skip them")
                bufs[a.name] = bufs[a.name].index_select(a.axis, _expand(p.to(bufs[a.name].device), a.block))
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
    where: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for g in spec.groups:
        for a in g.axes:
            if not a.buffer:
                where[a.name].append((a.axis, g.name, a.block))

    def moved(name: str, skip: int | None = None) -> torch.Tensor:
        t = pb[name]
        for axis, gname, block in where[name]:
            if axis != skip:
                t = t.index_select(axis, _expand(perms[gname], block))
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
                    wa = pa[a.name].movedim(a.axis, 0).reshape(g.size, -1)
                    wb = moved(a.name, a.axis).movedim(a.axis, 0).reshape(g.size, -1)
                    gain += wa @ wb.T
            _, cols = linear_sum_assignment(gain.cpu().numpy(), maximize=True)
            new, old = torch.as_tensor(cols, device=vec_a.device), perms[g.name]
            if torch.equal(new, old):
                continue
            before = similarity(touching[g.name])
            perms[g.name] = new
            if similarity(touching[g.name]) > before + 1e-12 * max(1.0, abs(before)):
                changed = True
            else:
                perms[g.name] = old
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


def _units(value: torch.Tensor, size: int, block: int) -> torch.Tensor:
    """A group's units as columns: ``[samples * positions, size]``."""
    return value.reshape(value.shape[0], size, block, -1).movedim(1, -1).reshape(-1, size).double()


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
    correlation of paired units. A group that feeds no layer keeps the identity. Units that are
    constant on ``x`` (dead ReLUs) correlate with nothing and are paired arbitrarily among
    themselves; their order does not change the outputs on ``x``, but it does change the distance
    in weight space, so use data on which the units are active."""
    t0 = time.perf_counter()
    if fm.has_bn:
        buffers_a = buffers_a or fm.recompute_bn(vec_a, x)
        buffers_b = buffers_b or fm.recompute_bn(vec_b, x)
    net_a, net_b = _Network(spec, fm, vec_a, buffers_a or {}), _Network(spec, fm, vec_b, buffers_b or {})
    taps = {name for g in spec.groups for name, _ in g.taps}
    corr = {g.name: _Correlation() for g in spec.groups if g.taps}
    for xb in x.split(batch_size):
        va, vb = net_a.values(xb, taps), net_b.values(xb, taps)
        for g in spec.groups:
            for name, block in g.taps:
                corr[g.name].add(_units(va[name], g.size, block), _units(vb[name], g.size, block))
    perms, before, after = spec.identity(), [], []
    for name, c in corr.items():
        m = c.matrix()
        _, cols = linear_sum_assignment(m.cpu().numpy(), maximize=True)
        perms[name] = torch.as_tensor(cols)
        before.append(m.diagonal().cpu())
        after.append(m[torch.arange(m.shape[0], device=m.device), perms[name].to(m.device)].cpu())
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
def _channel_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u = y.movedim(1, -1).reshape(-1, y.shape[1]).double()
    return u.mean(0), u.std(0, unbiased=False)


def unit_statistics(spec: PermutationSpec, fm: FlatModel, vec: torch.Tensor, x: torch.Tensor
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and standard deviation (float64) of the output of every layer in
    ``spec.repair_layers`` at ``vec`` on all of ``x`` in one batch (dropout off, BatchNorm on the
    batch's statistics)."""
    stats = {}
    layers = set(spec.repair_layers)

    def measure(n, y):
        if n.op == "call_module" and n.target in layers:
            stats[n.target] = _channel_stats(y)
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
                                 "follows it; it was built with bias=False")
        self.spec, self.fm, self.x, self.eps = spec, fm, x, eps
        self.ends = (unit_statistics(spec, fm, vec_a, x), unit_statistics(spec, fm, vec_b, x))

    @property
    def policy(self) -> str:
        """What the correction does, for the output tables."""
        text = (f"REPAIR: output mean/std of {len(self.spec.repair_layers)} hidden layer(s) set to the interpolated "
                f"endpoint values on a fixed {self.x.shape[0]}-sample training subset")
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
        net = _Network(self.spec, self.fm, vec)

        def correct(n, y):
            if n.op != "call_module" or n.target not in targets:
                return y
            mean, std = _channel_stats(y)
            t_mean, t_std = targets[n.target]
            scale = t_std / std.clamp_min(self.eps)
            shift = t_mean - mean * scale
            layer = net.module.get_submodule(n.target)
            layer.weight.mul_(scale.to(layer.weight.dtype).view(-1, *[1] * (layer.weight.ndim - 1)))
            layer.bias.mul_(scale.to(layer.bias.dtype)).add_(shift.to(layer.bias.dtype))
            view = (1, -1) + (1,) * (y.ndim - 2)
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
