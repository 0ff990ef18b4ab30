"""Curves in weight space: phi(t) as a combination of control points (flat vectors).

A curve with k bends has k + 2 control points ``control[0] = w1``, ``control[-1] = w2``.
``phi(t) = sum_i coeffs(t)[i] * control[i]`` for

* ``bezier``: Bernstein polynomials of degree k + 1 (k = 1 is the quadratic Bezier curve
  ``(1-t)^2 w1 + 2t(1-t) theta + t^2 w2``);
* ``chain``: a polygonal chain through the control points at t = i / (k + 1).

Checkpoint contract (shared by the curves and planes stages): a curve checkpoint is a
weights-only ``torch.save`` of ``{"format": "losslab.curve/1", "kind": str, "control":
Tensor[k + 2, D], "meta": dict}`` written with :func:`losslab.io.save_tensors`; the curves
stage writes ``curve.pt`` and one ``epochs/epoch{E:04d}.pt`` per epoch (E = 0 is the start).
"""
from __future__ import annotations

import math

import torch

KINDS = ("bezier", "chain")


def bezier_coeffs(t: torch.Tensor, n_control: int) -> torch.Tensor:
    """Bernstein coefficients, shape ``t.shape + (n_control,)``."""
    t = torch.as_tensor(t, dtype=torch.float64 if not torch.is_tensor(t) else t.dtype)
    n = n_control - 1
    i = torch.arange(n_control, dtype=t.dtype, device=t.device)
    binom = torch.tensor([math.comb(n, k) for k in range(n_control)], dtype=t.dtype, device=t.device)
    tt = t.unsqueeze(-1)
    return binom * tt.pow(i) * (1 - tt).pow(n - i)


def chain_coeffs(t: torch.Tensor, n_control: int) -> torch.Tensor:
    """Piecewise-linear (hat function) coefficients, shape ``t.shape + (n_control,)``."""
    t = torch.as_tensor(t, dtype=torch.float64 if not torch.is_tensor(t) else t.dtype)
    nodes = torch.linspace(0, 1, n_control, dtype=t.dtype, device=t.device)
    h = 1.0 / (n_control - 1)
    return (1 - (t.unsqueeze(-1) - nodes).abs() / h).clamp_min(0)


def coeffs(kind: str, t, n_control: int) -> torch.Tensor:
    if n_control < 3:
        raise ValueError(f"a curve needs at least 1 bend (3 control points), got {n_control} control points")
    if kind == "bezier":
        return bezier_coeffs(t, n_control)
    if kind == "chain":
        return chain_coeffs(t, n_control)
    raise ValueError(f"unknown curve kind {kind!r}; known: {', '.join(KINDS)}")


def point(kind: str, control: torch.Tensor, t) -> torch.Tensor:
    """phi(t) for a scalar t (returns [D]) or a 1-D tensor of t (returns [T, D])."""
    c = coeffs(kind, torch.as_tensor(t, dtype=control.dtype, device=control.device), control.shape[0])
    return c @ control
