"""Top Hessian eigenvalues by Lanczos on Hessian-vector products (``torch.func``).

The Hessian is never formed: ``hvp(v) = jvp(grad(f), (x,), (v,))`` (forward-over-reverse)
costs about one extra gradient. Lanczos with full re-orthogonalisation builds a ``m x m``
tridiagonal matrix whose eigenvalues (Ritz values) approximate the extreme eigenvalues of the
Hessian; the largest ones converge first.

Short directions: at a point ``x`` the number of short directions is the number of Hessian
eigenvalues of the training loss above ``threshold`` -- directions in which the loss rises
steeply (high curvature), as opposed to long, nearly flat directions. The count is taken from
the ``top_k`` largest Ritz values of ``iters`` Lanczos steps, so it saturates at ``top_k``.
"""
from __future__ import annotations

import torch
from torch.func import grad, jvp


def hvp_fn(loss_fn, x: torch.Tensor):
    """``v -> H(x) v`` for ``loss_fn: vec -> scalar`` at ``x``."""
    x = x.detach()
    g = grad(loss_fn)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(g, (x,), (v,))[1]

    return hvp


def lanczos(matvec, dim: int, iters: int, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Ritz values (descending) of ``iters`` Lanczos steps on a symmetric operator of size ``dim``."""
    m = min(int(iters), int(dim))
    if m < 1:
        raise ValueError(f"Lanczos needs at least one iteration, got iters={iters}")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g, dtype=torch.float64).to(device)
    v = v / v.norm()
    V = torch.zeros(m, dim, dtype=torch.float64, device=device)
    alpha = torch.zeros(m, dtype=torch.float64)
    beta = torch.zeros(max(m - 1, 0), dtype=torch.float64)
    k = m
    for j in range(m):
        V[j] = v
        w = matvec(v.to(dtype)).to(torch.float64)
        alpha[j] = torch.dot(w, v)
        # full re-orthogonalisation (twice is enough in floating point)
        for _ in range(2):
            w = w - V[: j + 1].T @ (V[: j + 1] @ w)
        if j == m - 1:
            break
        b = w.norm()
        if b < 1e-10 * max(1.0, float(alpha[: j + 1].abs().max())):
            k = j + 1  # invariant subspace found: the Ritz values are exact
            break
        beta[j] = b
        v = w / b
    T = torch.diag(alpha[:k]) + torch.diag(beta[: k - 1], 1) + torch.diag(beta[: k - 1], -1)
    return torch.linalg.eigvalsh(T).flip(0)


def top_eigenvalues(loss_fn, x: torch.Tensor, k: int, iters: int, seed: int = 0) -> torch.Tensor:
    """The ``k`` largest Hessian eigenvalues of ``loss_fn`` at ``x`` (Lanczos estimate)."""
    if iters < k:
        raise ValueError(f"Lanczos iters = {iters} must be at least top_k = {k}")
    vals = lanczos(hvp_fn(loss_fn, x), x.numel(), iters, seed, x.dtype, x.device)
    return vals[:k]


def count_short(eigenvalues: torch.Tensor, threshold: float) -> int:
    """Number of short directions: eigenvalues strictly above ``threshold``."""
    return int((eigenvalues > threshold).sum())
