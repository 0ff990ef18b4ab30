"""The flat-vector core: a point in weight space is one 1-D tensor.

``FlatModel`` wraps an ``nn.Module`` built once. It turns flat vectors into parameter views and
evaluates the module at any vector with ``torch.func.functional_call``, never mutating the
module's own parameters. Curves, planes, connectors, SWA and tunnel probes are all functions of
flat vectors evaluated through this one wrapper.

BatchNorm is explicit: at a new point the running statistics are stale, so
:meth:`FlatModel.recompute_bn` recomputes them on a fixed, un-augmented subset with
``torch.optim.swa_utils.update_bn``, and :meth:`FlatModel.bn_policy` describes what was done.
"""
from __future__ import annotations

import copy
import json
import math
import os
from typing import Iterable

import torch
from torch import nn
from torch.func import functional_call

from .io import Point

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
BN_BATCH = 256  # minibatch of every BatchNorm recompute unless evaluation.bn_batch says otherwise
BN_BATCH_ENV = "LOSSLAB_BN_BATCH"  # set by losslab.device.setup_job from the config's evaluation.bn_batch


def bn_batch() -> int:
    """The minibatch of a BatchNorm recompute: the job's ``evaluation.bn_batch`` (through
    :func:`losslab.device.setup_job`), else :data:`BN_BATCH`; read at call time."""
    return int(os.environ.get(BN_BATCH_ENV, BN_BATCH))


class FlatModel:
    def __init__(self, module: nn.Module):
        self.module = module
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        self.numels: list[int] = []
        for name, p in module.named_parameters():
            self.names.append(name)
            self.shapes.append(p.shape)
            self.numels.append(p.numel())
        self.offsets = [0]
        for n in self.numels:
            self.offsets.append(self.offsets[-1] + n)
        self.numel = self.offsets[-1]
        self.has_bn = any(isinstance(m, BN_TYPES) for m in module.modules())

    # ----- conversions -------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """Parameter names and shapes: two checkpoints are compatible iff layouts match."""
        return json.dumps([[n, list(s)] for n, s in zip(self.names, self.shapes)])

    def flatten(self, module: nn.Module | None = None) -> torch.Tensor:
        module = module or self.module
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    def params(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into ``vec`` with the module's parameter names and shapes (differentiable)."""
        if vec.shape[-1] != self.numel:
            raise ValueError(f"flat vector has {vec.shape[-1]} entries, the model has {self.numel} parameters")
        return {
            n: vec[..., o : o + k].reshape(*vec.shape[:-1], *s)
            for n, s, o, k in zip(self.names, self.shapes, self.offsets, self.numels)
        }

    def load_into(self, vec: torch.Tensor, module: nn.Module | None = None, buffers: dict | None = None) -> nn.Module:
        """Copy a flat vector (and buffers) into a module's own tensors (in place)."""
        module = module or self.module
        with torch.no_grad():
            for p, v in zip(module.parameters(), self.params(vec).values()):
                p.copy_(v)
            if buffers:
                own = dict(module.named_buffers())
                for k, v in buffers.items():
                    own[k].copy_(v)
        return module

    def buffers(self, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
        module = module or self.module
        return {k: v.detach().clone() for k, v in module.named_buffers()}

    def point(self, module: nn.Module | None = None, **meta) -> Point:
        """Capture a module's current weights as a :class:`Point`."""
        meta.setdefault("layout", self.layout)
        return Point(self.flatten(module).clone(), self.buffers(module), meta)

    # ----- evaluation -------------------------------------------------------------------
    def forward(self, vec: torch.Tensor, x: torch.Tensor, buffers: dict | None = None) -> torch.Tensor:
        """Outputs of the module at ``vec`` on ``x``, without touching the module's parameters."""
        state = self.params(vec)
        if buffers:
            state = {**state, **buffers}
        return functional_call(self.module, state, (x,))

    def recompute_bn(self, vec: torch.Tensor, x: torch.Tensor, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """Fresh BatchNorm running statistics at ``vec`` on the fixed subset ``x``.

        Uses ``torch.optim.swa_utils.update_bn`` on a scratch copy of the module (cumulative
        average over the subset in minibatches of ``batch_size``, default :func:`bn_batch`, in
        train mode). Returns the module's buffers at ``vec`` (``{}`` for a model without BN).
        """
        if not self.has_bn:
            return {}
        scratch = copy.deepcopy(self.module).to(x.device)
        self.load_into(vec.to(x.device), scratch)
        torch.optim.swa_utils.update_bn(list(x.split(batch_size or bn_batch())), scratch)
        return self.buffers(scratch)

    def bn_policy(self, n_bn: int) -> str:
        if not self.has_bn:
            return "none (no BatchNorm layers)"
        return f"recomputed at each point on a fixed un-augmented {n_bn}-sample training subset (swa_utils.update_bn)"

    @torch.no_grad()
    def outputs(self, vec: torch.Tensor, x: torch.Tensor, buffers: dict | None = None, batch_size: int = 4096) -> torch.Tensor:
        """Eval-mode outputs at ``vec`` on all of ``x``, in chunks."""
        was = self.module.training
        self.module.eval()
        try:
            return torch.cat([self.forward(vec, xb, buffers) for xb in x.split(batch_size)])
        finally:
            self.module.train(was)


def layout_of(obj) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter (name, shape) list of a FlatModel, a Point, or a layout JSON string."""
    if isinstance(obj, FlatModel):
        return [(n, tuple(s)) for n, s in zip(obj.names, obj.shapes)]
    if hasattr(obj, "meta"):
        obj = obj.meta["layout"]
    if isinstance(obj, list):
        return [(n, tuple(s)) for n, s in obj]
    return [(n, tuple(s)) for n, s in json.loads(obj)]


def filter_normalise(d: torch.Tensor, w: torch.Tensor, layout) -> torch.Tensor:
    """Filter normalisation (Li et al. 2018), the one definition every stage uses: each filter
    (output row) of every parameter with two or more dimensions of direction ``d`` gets the norm of
    the same filter of ``w``; biases and other one-dimensional parameters (BatchNorm) get zero.
    ``d`` is ``[D]`` or ``[k, D]``; ``layout`` as :func:`layout_of` accepts."""
    layout = layout_of(layout)
    out = torch.zeros_like(d)
    o = 0
    for _, shape in layout:
        k = math.prod(shape)
        if len(shape) >= 2:
            dd = d[..., o: o + k].reshape(*d.shape[:-1], shape[0], -1)
            ww = w[o: o + k].reshape(shape[0], -1)
            scale = ww.norm(dim=-1, keepdim=True) / dd.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out[..., o: o + k] = (dd * scale).reshape(*d.shape[:-1], k)
        o += k
    if o != d.shape[-1]:
        raise ValueError(f"the layout has {o} parameters, the direction {d.shape[-1]}")
    return out


def loss_fn(task: str):
    if task == "classification":
        return torch.nn.functional.cross_entropy
    if task == "regression":
        return torch.nn.functional.mse_loss
    raise ValueError(f"unknown task {task!r}")


def metrics_from_outputs(out: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, float]:
    """Loss (mean NLL for classification, MSE for regression) and accuracy."""
    if task == "classification":
        loss = torch.nn.functional.cross_entropy(out, y).item()
        acc = (out.argmax(-1) == y).float().mean().item()
    else:
        loss = torch.nn.functional.mse_loss(out, y).item()
        acc = math.nan
    return {"loss": loss, "accuracy": acc}


def evaluate(fm: FlatModel, vec: torch.Tensor, x: torch.Tensor, y: torch.Tensor, task: str,
             buffers: dict | None = None, batch_size: int = 4096) -> dict[str, float]:
    """Loss and accuracy of the model at ``vec`` on preloaded tensors."""
    return metrics_from_outputs(fm.outputs(vec, x, buffers, batch_size), y, task)


def evaluate_point(fm: FlatModel, vec: torch.Tensor, ev, task: str, splits: Iterable[str] = ("train", "test"),
                   batch_size: int = 4096) -> dict[str, dict[str, float]]:
    """Evaluate ``vec`` on the fixed subsets of ``ev`` (an ``EvalData``), recomputing BN first."""
    buffers = fm.recompute_bn(vec, ev.bn_x) if fm.has_bn else None
    return {s: evaluate(fm, vec, *ev.split(s), task, buffers, batch_size) for s in splits}
