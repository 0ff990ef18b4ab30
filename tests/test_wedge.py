"""Toy wedge landscape, subspaces, connectors on the toy model, and Lanczos (all CPU, seconds)."""
from __future__ import annotations

import math

import pytest
import torch

from losslab import connectors, hessian, wedge

torch.set_num_threads(1)


# ---- surrogate loss ------------------------------------------------------------------------
def test_surrogate_is_zero_on_a_wedge_and_equals_distance():
    D, s = 12, 3
    loss = wedge.WedgeLoss(D, s)
    g = torch.Generator().manual_seed(0)
    w = 2.0 + torch.rand(D, generator=g)
    w[[1, 5, 7]] = 0.0  # on the wedge whose short axes are 1, 5, 7
    assert float(loss(w)) == 0.0
    # moving along a long axis keeps it on the wedge
    w2 = w.clone()
    w2[0] += 10.0
    assert float(loss(w2)) == 0.0
    # off the wedge: distance = root of the sum of squares of the s smallest |components|
    v = torch.tensor([5.0, -0.3, 4.0, 0.4, -6.0, 2.0, 0.1, 3.0, 7.0, -8.0, 9.0, 1.5])
    expected = math.sqrt(0.1**2 + 0.3**2 + 0.4**2)
    assert float(loss(v)) == pytest.approx(expected, rel=1e-6)
    # ... which is the distance to the nearest wedge point
    assert float((v - loss.nearest_point(v)).norm()) == pytest.approx(expected, rel=1e-6)
    assert float(loss(loss.nearest_point(v))) == 0.0


def test_surrogate_batched_and_rotated():
    D, s = 10, 4
    plain = wedge.WedgeLoss(D, s)
    rot = wedge.WedgeLoss(D, s, rotate=True, seed=3)
    R = rot.rotation
    assert torch.allclose(R @ R.T, torch.eye(D), atol=1e-5)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, D, generator=g)
    # a point given in the wedge frame, rotated out, has the same loss under the rotated model
    assert torch.allclose(rot(z @ R.T), plain(z), atol=1e-5)
    assert plain(z).shape == (5,)
    on = rot.nearest_point(z @ R.T)
    assert rot(on).abs().max() < 1e-5


def test_bad_dimensions_raise():
    with pytest.raises(ValueError, match="s = 10"):
        wedge.WedgeLoss(10, 10)
    with pytest.raises(ValueError, match="s = 12"):
        wedge.WedgeLoss(10, 12)
    with pytest.raises(ValueError, match="D = 5"):
        wedge.WedgeLoss(5, 2)(torch.zeros(6))
    with pytest.raises(ValueError, match="parameter count"):
        wedge.hyperplane_experiment(20, 3, [21], 1, 5, 0.1)


# ---- experiment 1: transition at d = s -------------------------------------------------------
def test_hyperplane_transition_at_d_equals_s():
    D, s = 40, 5
    df = wedge.hyperplane_experiment(D, s, [2, s, s + 3], planes=2, steps=250, lr=1.0, seed=0, init_mean=3.0)
    rel = df.assign(r=df.final_loss / df.start_loss).groupby("d")["r"].max()
    assert rel[2] > 0.05          # d < s: the plane cannot reach any wedge
    assert rel[s + 3] < 1e-3      # d > s: every plane reaches a wedge
    assert rel[s] < 2e-2          # d = s: solvable (just)
    assert wedge.transition_dim(df.assign(final_loss=df.final_loss / df.start_loss), tol=2e-2) == s


# ---- subspaces ------------------------------------------------------------------------------
def test_dense_and_blockwise_subspaces_are_orthogonal_to_excluded_directions():
    D, d = 300, 20
    g = torch.Generator().manual_seed(0)
    U = connectors.orthonormal_rows(torch.randn(2, D, generator=g))
    dense = connectors.make_subspace(D, d, U, seed=1, memory_budget_mb=100)
    assert dense.kind == "dense"
    assert torch.allclose(dense.basis.T @ dense.basis, torch.eye(d), atol=1e-5)
    # a tiny budget forces the block-wise projection
    block = connectors.make_subspace(D, d, U, seed=1, memory_budget_mb=0.01)
    assert block.kind == "blockwise" and block.block_cols < d
    c = torch.randn(d, generator=g, requires_grad=True)
    for sub in (dense, block):
        x = sub.map(c)
        assert (U @ x).abs().max() < 1e-4
    # block-wise gradient = explicit matrix transpose (regenerated from the seed)
    G = torch.cat([Gb for _, _, Gb in block.blocks("cpu", torch.float32)], dim=1)
    v = torch.randn(D, generator=g)
    (block.map(c) @ v).backward()
    P = G - U.T @ (U @ G)
    assert torch.allclose(c.grad, P.T @ v, atol=1e-4)


def test_d_larger_than_parameter_count_raises():
    with pytest.raises(ValueError, match="larger than the parameter count"):
        connectors.make_subspace(50, 50, torch.eye(50)[:1], key="connectors.d")
    loss = wedge.WedgeLoss(30, 3)
    a, b = torch.randn(30), torch.randn(30)
    with pytest.raises(ValueError, match="parameter count"):
        connectors.connector(loss, a, b, segments=2, d=40, steps=1, lr=0.1)


def test_connector_bad_inputs():
    loss = wedge.WedgeLoss(30, 3)
    with pytest.raises(ValueError, match="different shapes"):
        connectors.connector(loss, torch.zeros(30), torch.zeros(31), segments=2, d=3, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="different shapes"):
        connectors.m_connector(loss, [torch.zeros(30), torch.zeros(30), torch.zeros(29)], 2, 3, 1, 0.1)
    with pytest.raises(ValueError, match="at least 2 optima"):
        connectors.m_connector(loss, [torch.zeros(30)], 2, 3, 1, 0.1)
    with pytest.raises(ValueError, match="at least 2 optima"):
        connectors.simplex_centre(loss, [torch.zeros(30)], 3, 1, 0.1)


# ---- experiment 2: tunnel -------------------------------------------------------------------
def test_toy_tunnel_connector_far_below_line_and_two_halves():
    path, cos, summary = wedge.tunnel_experiment(100, 10, segments=12, d=30, subspace="shared", steps=250, lr=0.05,
                                                 eval_points=121, seed=0, init_mean=3.0)
    assert summary["endpoint_loss"] < 1e-2
    assert summary["line_max"] > 1.0
    assert summary["connector_max"] < 0.5 * summary["line_max"]
    m = cos.pivot(index="i", columns="j", values="cosine").to_numpy()
    n = m.shape[0]
    first, last = m[: n // 3, : n // 3], m[-(n // 3):, -(n // 3):]
    across = m[: n // 3, -(n // 3):]
    assert first.mean() > across.mean() + 0.3 and last.mean() > across.mean() + 0.3


def test_polyline_meets_nodes_and_endpoints():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(5, 7, generator=g)
    t = torch.linspace(0, 1, 5)
    assert torch.allclose(connectors.polyline(t, pts, t), pts, atol=1e-6)
    mid = connectors.polyline(t, pts, torch.tensor([0.125]))
    assert torch.allclose(mid[0], 0.5 * (pts[0] + pts[1]), atol=1e-6)


def test_triangle_surface_interpolates_nodes():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 9, generator=g)
    res = connectors.m_connector(lambda v: (v**2).sum(), X, resolution=2, d=None, steps=0, lr=0.1)
    assert res.bary.shape == (6, 3)
    # with zero steps the nodes are the flat convex combinations, so the surface is the flat simplex
    q = connectors.barycentric_grid(3, 7)
    surf = connectors.triangle_surface(res, q)
    assert torch.allclose(surf, q.float() @ X, atol=1e-5)
    # and it passes through the nodes exactly
    res.points[4] += 1.0
    assert torch.allclose(connectors.triangle_surface(res, res.bary[4:5])[0], res.points[4], atol=1e-5)


# ---- experiment 3: radial probe -------------------------------------------------------------
def test_radial_probe_is_a_circular_well():
    df = wedge.radial_experiment(200, 20, offset=0.5, directions=30, max_radius=4.0, points=9, steps=200, lr=0.05,
                                 seed=0, init_mean=3.0)
    at0 = df[df.r == 0]["loss"]
    assert at0.max() == pytest.approx(0.5, rel=1e-3)
    far = df[df.r == df.r.max()]["loss"]
    assert far.min() > at0.max()  # rises in every direction
    assert far.std() / far.mean() < 0.25  # at nearly the same rate


# ---- Lanczos ------------------------------------------------------------------------------
def test_lanczos_matches_full_hessian_eigenvalues():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    from losslab.flat import FlatModel

    fm = FlatModel(net)
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    vec = fm.flatten().double()
    fm.module.double()
    xd = x.double()
    f = lambda v: torch.nn.functional.cross_entropy(fm.forward(v, xd), y)
    H = torch.autograd.functional.hessian(f, vec)
    exact = torch.linalg.eigvalsh(H).flip(0)
    D = vec.numel()
    est = hessian.lanczos(hessian.hvp_fn(f, vec), D, D, seed=0, dtype=torch.float64)
    assert torch.allclose(est[:5], exact[:5], atol=1e-6)
    top = hessian.top_eigenvalues(f, vec, 3, D)
    assert torch.allclose(top, exact[:3], atol=1e-6)
    thr = float(exact[4] + exact[5]) / 2
    assert hessian.count_short(top, 1e9) == 0
    assert hessian.count_short(est, thr) == 5
    with pytest.raises(ValueError, match="top_k"):
        hessian.top_eigenvalues(f, vec, 10, 5)
    # the network loss closure used by the connector stage is the same function
    assert float(connectors.NetworkLoss(fm, xd, y, "classification")(vec)) == pytest.approx(float(f(vec)), rel=1e-9)


def test_network_loss_with_batchnorm_and_dropout_is_deterministic_and_lanczos_works():
    from losslab import models
    from losslab.flat import FlatModel

    torch.manual_seed(0)
    m = models.build_model({"name": "mlp", "width": 0.1, "dropout": 0.3, "batchnorm": True, "options": {}}, (1, 8, 8), 10)
    fm = FlatModel(m)
    before = {k: v.clone() for k, v in m.named_buffers()}
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    loss = connectors.NetworkLoss(fm, x, y, "classification")
    v = fm.flatten()
    assert float(loss(v)) == float(loss(v))  # dropout off
    eig = hessian.top_eigenvalues(loss, v, 3, 6)
    assert eig[0] >= eig[1] >= eig[2] and eig[0] > 0
    assert all(torch.equal(before[k], b) for k, b in m.named_buffers())  # running stats untouched
    assert m.training  # module mode restored
