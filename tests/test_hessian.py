"""Hessian spectra (losslab.hessian) against exact linear algebra: a small MLP on digits whose dense
Hessian torch.func.hessian forms, in float64."""
from __future__ import annotations

import pytest
import torch

from losslab import data, hessian
from losslab.flat import FlatModel
from losslab.models import build_model


def _mlp(batchnorm=False, hidden=8):
    torch.manual_seed(0)
    ds = data.load_dataset("digits")
    spec = {"name": "mlp", "width": 1.0, "dropout": 0.0, "batchnorm": batchnorm,
            "options": {"hidden": hidden, "depth": 1}}
    fm = FlatModel(build_model(spec, ds.in_shape, ds.num_outputs).double())
    x, y = ds.train_x[:200].double(), ds.train_y[:200]
    return fm, fm.flatten().clone(), x, y, ds.train_x[200:328].double()


@pytest.fixture(scope="module")
def mlp():
    fm, w, x, y, _ = _mlp()
    f = hessian.point_loss(fm, w, x, y, "classification")
    exact = torch.linalg.eigvalsh(torch.func.hessian(f)(w)).flip(0)
    return f, w, exact


def test_top_eigenvalues_agree_with_the_dense_hessian_and_report_residuals(mlp):
    f, w, exact = mlp
    k = 12
    rs = hessian.top_eigenvalues_converged(hessian.hvp_fn(f, w), w.numel(), k, tol=1e-7, max_steps=300, starts=3,
                                           seed=1, dtype=torch.float64)
    assert len(rs) == 3
    for r in rs:
        assert r.steps < w.numel()  # converged early, not by exhausting the space
        assert bool(r.converged(1e-7)[:k].all())
        rel = ((r.values[:k] - exact[:k]).abs() / exact[:k].abs()).max()
        assert rel < 1e-4, rel
        # the reported residual bounds the distance to the nearest exact eigenvalue
        dist = (r.values[:k, None] - exact[None]).abs().min(1).values
        assert bool((dist <= r.residuals[:k] + 1e-10).all())


def test_hutchinson_trace_lies_within_three_standard_errors(mlp):
    f, w, exact = mlp
    tr = hessian.hutchinson(hessian.hvp_fn(f, w), w.numel(), probes=64, seed=3, dtype=torch.float64)
    assert tr.probes == 64 and tr.se > 0
    assert abs(tr.trace - float(exact.sum())) < 3 * tr.se, (tr.trace, float(exact.sum()), tr.se)


def test_slq_density_moments_match_the_exact_spectrum(mlp):
    f, w, exact = mlp
    n = w.numel()
    rs = hessian.top_eigenvalues_converged(hessian.hvp_fn(f, w), n, 1, tol=1e-9, max_steps=40, min_steps=40,
                                           starts=12, seed=5, dtype=torch.float64)
    for p, true in ((1, float(exact.mean())), (2, float((exact ** 2).mean()))):
        est, se = hessian.slq_moments(rs, p)
        # stated tolerance: 4 standard errors over the starts (a quarter of the value at most)
        assert abs(est - true) < 4 * se and se < 0.25 * true, (p, est, true, se)
    # the broadened density integrates to one and has the quadrature's mean
    grid = hessian.density_grid([rs], 4000, margin=0.5)
    sigma = 0.002 * (grid[-1] - grid[0])
    dens = hessian.slq_density(rs, grid, sigma)
    dx = grid[1] - grid[0]
    assert abs(dens.sum() * dx - 1) < 1e-3
    assert abs((grid * dens).sum() * dx - hessian.slq_moments(rs, 1)[0]) < 1e-3 * float(exact.abs().max())


def test_short_count_is_converged_raised_past_top_k_and_flags_saturation(mlp):
    f, w, exact = mlp
    hvp, n = hessian.hvp_fn(f, w), w.numel()
    thr = float(exact[20] + exact[21]) / 2  # exactly 21 eigenvalues above
    counts = hessian.short_directions(hvp, n, thr, top_k=5, min_steps=10, tol=1e-6, max_top_k=80, max_steps=400,
                                      starts=3, seed=2, dtype=torch.float64)
    for c in counts:
        assert (c.count, c.converged, c.saturated) == (21, True, False)
        assert c.k >= 22  # the cap of 5 was raised rather than saturating
        assert c.n_converged >= 22
    capped = hessian.short_directions(hvp, n, thr, top_k=5, min_steps=10, tol=1e-6, max_top_k=10, max_steps=400,
                                      starts=2, seed=2, dtype=torch.float64)
    assert all(c.saturated and c.count == 10 and c.k == 10 for c in capped)
    # too few steps to converge: the count uses converged values only and says so
    early = hessian.short_directions(hvp, n, thr, top_k=30, min_steps=30, tol=1e-12, max_top_k=30, max_steps=30,
                                     starts=1, seed=2, dtype=torch.float64)[0]
    assert not early.converged and early.count <= early.n_converged < 30


def test_a_count_at_the_cap_is_decided_by_interlacing_before_its_values_converge(mlp):
    f, w, exact = mlp
    hvp, n = hessian.hvp_fn(f, w), w.numel()
    thr = float(exact[150])  # 150 eigenvalues above it, far more than the cap of 20
    tol = 1e-10
    c = hessian.short_directions(hvp, n, thr, top_k=10, min_steps=20, tol=tol, max_top_k=20, max_steps=400,
                                 starts=1, seed=2, dtype=torch.float64)[0]
    assert (c.count, c.k, c.saturated, c.converged) == (20, 20, True, True)
    assert bool((c.kept.values > thr).all())
    assert c.n_converged < 20  # decided with unconverged values: each is a lower bound of its eigenvalue
    assert bool((c.kept.values <= exact[:20] + 1e-8).all())
    # waiting for the 20 values to converge, as before, takes more Lanczos steps
    slow = hessian.top_eigenvalues_converged(hvp, n, 20, tol=tol, max_steps=400, starts=1, seed=2, min_steps=20,
                                             dtype=torch.float64)[0]
    assert bool(slow.converged(tol)[:20].all()) and slow.steps > c.ritz.steps


def test_batchnorm_statistics_are_recomputed_at_the_point_and_held_fixed():
    fm, w, x, y, bn_x = _mlp(batchnorm=True)
    f = hessian.point_loss(fm, w, x, y, "classification", bn_x)
    assert "held fixed (eval mode)" in f.bn_policy and "128-sample" in f.bn_policy
    buffers = fm.recompute_bn(w, bn_x)
    fm.module.eval()
    ref = torch.nn.functional.cross_entropy(fm.forward(w, x, buffers), y)
    assert float(f(w)) == pytest.approx(float(ref), rel=1e-12)
    with pytest.raises(ValueError, match="bn_x"):
        hessian.point_loss(fm, w, x, y, "classification")
    # the Hessian of that fixed function: Lanczos agrees with the dense Hessian
    exact = torch.linalg.eigvalsh(torch.func.hessian(f)(w)).flip(0)
    r = hessian.top_eigenvalues_converged(hessian.hvp_fn(f, w), w.numel(), 3, tol=1e-8, starts=1,
                                          dtype=torch.float64)[0]
    assert float(((r.values[:3] - exact[:3]).abs() / exact[:3].abs()).max()) < 1e-4


def test_spectra_tables_are_long_and_compute_equal_points_once():
    fm, w, x, y, _ = _mlp(hidden=4)
    cfg = {"threshold": 0.05, "top_k": 4, "min_steps": 8, "tol": 1e-3, "max_top_k": 16, "max_steps": 100,
           "starts": 2, "probes": 4, "seed": 0}
    w2 = w + 0.1
    t = hessian.spectra_tables(fm, [w, w2, w], [{"path": "curve", "t": 0.0}, {"path": "curve", "t": 1.0},
                                                {"path": "line", "t": 0.0}], x, y, "classification", cfg,
                               density_points=50)
    c, e, d = t["counts"], t["eigenvalues"], t["density"]
    assert len(c) == 6 and set(c.start) == {0, 1}
    assert {"path", "t", "start", "short_count", "n_converged", "converged", "saturated", "top_eigenvalue", "trace",
            "trace_se", "slq_mean", "slq_second_moment", "samples", "n_train", "bn_policy"} <= set(c.columns)
    a, b = c[(c.path == "curve") & (c.t == 0.0)], c[c.path == "line"]
    assert a.drop(columns=["path"]).reset_index(drop=True).equals(b.drop(columns=["path"]).reset_index(drop=True))
    per = e.groupby(["path", "t", "start"]).short.sum().rename("n").reset_index().merge(c)
    assert (per.n == per.short_count).all()  # the count is of the listed values it counts
    assert len(d) == 3 * 50 and d.groupby(["path", "t"]).eigenvalue.apply(tuple).nunique() == 1  # one grid
