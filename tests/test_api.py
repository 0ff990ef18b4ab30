"""losslab as a library (losslab.api): modules and tensors in, the workflow's tables out, through the
workflow's own functions; and every python example of docs/api.md runs."""
from __future__ import annotations

import os
import re

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import losslab
from losslab import api, curves
from losslab.data import EvalData
from losslab.flat import FlatModel, evaluate_point

from conftest import REPO


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] * x[:, 1] + 0.3 * x[:, 2] > 0).long()


TRAIN, TEST = _data(160, 0), _data(80, 1)


def _net(seed, bn=False, steps=40):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 12)] + ([nn.BatchNorm1d(12)] if bn else []) + [nn.ReLU(), nn.Linear(12, 3)]
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), 0.05)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(TRAIN[0]), TRAIN[1]).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def nets():
    return [_net(s) for s in range(3)]


def _ev(net, bn_x=None):
    return EvalData(*TRAIN, *TEST, TRAIN[0] if bn_x is None else bn_x)


def test_package_reexports_the_api_and_keeps_its_modules():
    assert losslab.plane is api.plane and losslab.fit_curve is api.fit_curve
    from losslab import align, hessian  # the library modules, callable as the API functions

    assert hasattr(align, "permutation_spec") and hasattr(hessian, "lanczos")
    assert callable(losslab.align) and callable(losslab.hessian)


def test_library_modules_are_callable_without_loading_the_api_first():
    """A workflow job imports losslab.align alone: it must not load the API; a notebook that did
    the same and then calls losslab.align(...) gets the API function."""
    import subprocess
    import sys

    code = ("import sys, losslab.align, losslab.hessian, losslab; assert 'losslab.api' not in sys.modules; "
            "assert callable(losslab.align) and callable(losslab.hessian); print(losslab.align.__call__.__doc__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(losslab.__file__).parents[1])})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("bn", [False, True])
def test_line_ends_are_the_networks_with_batchnorm_recomputed(bn):
    a, b = _net(0, bn), _net(1, bn)
    line = losslab.interpolate(a, b, TRAIN, TEST, points=5)
    assert {"path", "t", "split", "loss", "accuracy", "error", "bn_policy", "n_train", "n_test"} <= set(line.columns)
    assert len(line) == 10 and sorted(line["t"].unique()) == [0, 0.25, 0.5, 0.75, 1]
    fm = FlatModel(a)
    for t, net in ((0.0, a), (1.0, b)):
        want = evaluate_point(fm, fm.flatten(net), _ev(a), "classification")  # BN recomputed on bn_x
        got = line[line.t == t].set_index("split")["loss"]
        assert got["train"] == pytest.approx(want["train"]["loss"], abs=1e-6)
        assert got["test"] == pytest.approx(want["test"]["loss"], abs=1e-6)
    assert ("recomputed" in line["bn_policy"].iloc[0]) == bn
    # state dicts with model=, and a DataLoader, give the same table
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*TRAIN), batch_size=64)
    same = losslab.interpolate(a.state_dict(), b.state_dict(), loader, TEST, points=5, model=_net(5, bn, 0))
    assert np.allclose(same["loss"], line["loss"], atol=1e-6)


def test_planes_random_three_networks_and_train_only(nets):
    a, b, c = nets
    land = losslab.plane(a, train=TRAIN, test=TEST, resolution=5, extent=0.5)  # filter-normalised directions
    g = land.grid
    assert len(g) == 2 * 25 and {"x", "y", "split", "loss", "accuracy", "ix", "iy", "tile", "plane"} <= set(g.columns)
    centre = g[(g.ix == 2) & (g.iy == 2)].set_index("split")["loss"]  # (0, 0) is the network itself
    fm = FlatModel(a)
    want = evaluate_point(fm, fm.flatten(a), _ev(a), "classification")
    assert centre["train"] == pytest.approx(want["train"]["loss"], abs=1e-5)
    assert list(land.points["point"]) == ["optimum"] and land.track is None
    three = losslab.plane(a, b, c, train=TRAIN, resolution=4)
    assert set(three.grid["split"]) == {"train"} and (three.grid["n_test"] == 0).all()
    assert list(three.points["point"]) == ["w1", "w2", "w3"]


def test_curve_fit_evaluate_and_plane_use_the_workflow_functions(nets, monkeypatch):
    a, b, _ = nets
    cv = losslab.fit_curve(a, b, TRAIN, epochs=2, bends=2, kind="chain", lr=0.01)
    assert cv.kind == "chain" and cv.control.shape == (4, FlatModel(a).numel) and cv.status == "ok"
    assert torch.equal(cv.control[0], api.vector(a)) and torch.equal(cv.control[-1], api.vector(b))
    assert torch.equal(cv.at(0.0), api.vector(a)) and list(cv.history["epoch"]) == [0, 1, 2]
    mid = api.network(cv.at(0.5), a)
    assert torch.equal(api.vector(mid), cv.at(0.5))

    calls = []
    real = curves.evaluate_paths
    monkeypatch.setattr(curves, "evaluate_paths", lambda *a, **k: calls.append(1) or real(*a, **k))
    along, ens, summary = losslab.evaluate_path(cv, TRAIN, TEST, model=a, points=5)
    assert calls, "evaluate_path must run curves.evaluate_paths, the workflow's code"
    assert set(along["path"]) == {"curve", "line"} and set(summary["split"]) == {"train", "test"}
    ends = along[along.t.isin([0.0, 1.0])].groupby(["t", "split"])["loss"].nunique()
    assert (ends == 1).all()  # curve and line meet at their ends

    land = losslab.plane(curve=cv, model=a, train=TRAIN, resolution=5, t_marks=(0.5,))
    assert land.track is not None and land.track["mark"].sum() == 1
    assert list(land.points["point"]) == ["w1", "w2", "bend"]


def test_align_returns_the_permuted_network(nets):
    a, b, _ = nets
    b2 = losslab.align(a, b, TRAIN[0], method="weight_matching")
    assert torch.allclose(b2(TEST[0]), b(TEST[0]), atol=1e-5)
    va, vb, vb2 = api.vector(a), api.vector(b), api.vector(b2)
    assert (vb2 - va).norm() <= (vb - va).norm() + 1e-6
    b3 = losslab.align(a, b, TRAIN, method="activation_matching")
    assert torch.allclose(b3(TEST[0]), b(TEST[0]), atol=1e-5)
    lines, barriers = losslab.align_lines(a, b, TRAIN, TEST, methods=("weight_matching",), points=3)
    assert set(lines["method"]) == {"naive", "aligned", "aligned+repair"} and "barrier" in barriers


def test_hessian_spectrum_equals_the_dense_hessian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3))
    fm = FlatModel(net)
    w = fm.flatten()
    dense = torch.autograd.functional.hessian(
        lambda v: nn.functional.cross_entropy(fm.forward(v, TRAIN[0]), TRAIN[1]), w).double()
    exact = torch.linalg.eigvalsh(dense).flip(0)
    got = losslab.hessian(net, TRAIN, k=3, tol=1e-6, probes=200, threshold=float(exact[1] + exact[2]) / 2)
    eig = got["eigenvalues"]
    top = eig[(eig.start == 0) & (eig["rank"] < 3)].sort_values("rank")
    assert np.allclose(top["eigenvalue"], exact[:3].numpy(), rtol=1e-4, atol=1e-6)
    counts = got["counts"]
    assert (counts["short_count"] == 2).all() and counts["converged"].all()  # two eigenvalues above the threshold
    tr = counts.iloc[0]
    assert abs(tr["trace"] - float(dense.trace())) <= 4 * tr["trace_se"] + 1e-6
    d = got["density"]
    e, f = d["eigenvalue"].to_numpy(), d["density"].to_numpy()
    assert np.isclose(np.sum((f[1:] + f[:-1]) * np.diff(e)) / 2, 1.0, atol=0.05)  # a density: integrates to 1


def test_tunnels_connectors_and_ensembles(nets):
    a, b, c = nets
    widths, profile = losslab.tunnel_width(a, TRAIN, directions=2, r_max=4.0, profile_points=4, steps=3,
                                           mode="relative", threshold=2.0)
    assert len(widths) == 2 and (widths["status"] == "ok").all() and widths["test_loss"].isna().all()
    assert ((widths["width"] > 0) & (widths["width"] <= 4.0)).all() and len(profile) == 2 * 4
    nodes, path = losslab.connector(a, b, TRAIN, TEST, segments=2, d=5, steps=5, eval_points=3)
    assert list(nodes["node"]) == [0, 1, 2] and set(path["path"]) == {"line", "connector"}
    ends = nodes.iloc[[0, -1]]
    assert np.allclose(ends["node_train_loss"], ends["line_train_loss"])
    ens = losslab.ensemble_eval([a, b, c], TRAIN, TEST)
    one = ens[(ens.n_members == 1) & (ens.split == "test")].iloc[0]
    assert one["loss"] == pytest.approx(one["member_loss"], abs=1e-5)
    assert sorted(ens["n_members"].unique()) == [1, 2, 3]


def test_every_python_example_in_docs_api_runs(tmp_path, monkeypatch):
    text = (REPO / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md python block {i + 1}", "exec"), {"__name__": "__main__"})
    made = sorted(os.listdir(tmp_path))
    assert {"three-networks.html", "digits-curve.html", "digits-curve.vts", "digits-curve.vtp"} <= set(made)
