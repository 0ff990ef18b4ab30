"""Curves stage: formulas, training, evaluation along t, bad input, and one tiny workflow run."""
import math

import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY, planned_jobs, snakemake
from losslab import curves, data, io
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.train import TrainSettings, train_endpoint

CNN = {"name": "simplecnn", "width": 0.5, "dropout": 0.0, "batchnorm": False, "options": {}}
MLP = {"name": "mlp", "width": 1.0, "dropout": 0.0, "batchnorm": False, "options": {"hidden": 16, "depth": 2}}


# ----- formulas ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", curves.KINDS)
@pytest.mark.parametrize("bends", [1, 2, 3, 5])
def test_curve_meets_its_endpoints_exactly(kind, bends):
    g = torch.Generator().manual_seed(bends)
    control = torch.randn(bends + 2, 50, generator=g)
    assert torch.equal(curves.point(kind, control, 0.0), control[0])
    assert torch.equal(curves.point(kind, control, 1.0), control[-1])
    pts = curves.point(kind, control, torch.tensor([0.0, 0.3, 1.0]))
    assert torch.equal(pts[0], control[0]) and torch.equal(pts[-1], control[-1])
    c = curves.coeffs(kind, torch.linspace(0, 1, 101, dtype=torch.float64), bends + 2)
    assert torch.allclose(c.sum(-1), torch.ones(101, dtype=torch.float64)) and (c >= 0).all()


def test_midpoints():
    w1, th, w2 = torch.randn(3, 20, dtype=torch.float64).unbind(0)
    control = torch.stack([w1, th, w2])
    assert torch.allclose(curves.point("bezier", control, 0.5), 0.25 * w1 + 0.5 * th + 0.25 * w2)
    assert torch.equal(curves.point("chain", control, 0.5), th)
    assert torch.allclose(curves.point("chain", control, 0.25), 0.5 * (w1 + th))
    ctrl4 = torch.randn(4, 7, dtype=torch.float64)
    assert torch.allclose(curves.point("chain", ctrl4, 1 / 3), ctrl4[1])
    # a cubic Bezier at t = 1/2: (w1 + 3 th1 + 3 th2 + w2) / 8
    assert torch.allclose(curves.point("bezier", ctrl4, 0.5), (ctrl4[0] + 3 * ctrl4[1] + 3 * ctrl4[2] + ctrl4[3]) / 8)


@pytest.mark.parametrize("t", [0.1, 0.4, 0.7, 0.95])
def test_derivative_through_autograd(t):
    w1, th, w2 = torch.randn(3, 6, dtype=torch.float64).unbind(0)
    control = torch.stack([w1, th, w2])
    d = torch.autograd.functional.jacobian(lambda s: curves.point("bezier", control, s), torch.tensor(t, dtype=torch.float64))
    assert torch.allclose(d, 2 * (1 - t) * (th - w1) + 2 * t * (w2 - th))
    d = torch.autograd.functional.jacobian(lambda s: curves.point("chain", control, s), torch.tensor(t, dtype=torch.float64))
    assert torch.allclose(d, 2 * (th - w1) if t < 0.5 else 2 * (w2 - th))
    dc = curves.derivative_coeffs("bezier", t, 3)
    assert torch.allclose(dc, torch.tensor([-2 * (1 - t), 2 - 4 * t, 2 * t], dtype=torch.float64))
    # gradient of a loss at phi(t) with respect to the bend: chain rule through the coefficient
    theta = th.clone().requires_grad_(True)
    phi = curves.point("bezier", torch.stack([w1, theta, w2]), t)
    phi.pow(2).sum().backward()
    assert torch.allclose(theta.grad, 2 * t * (1 - t) * 2 * phi.detach())


@pytest.mark.parametrize("kind", curves.KINDS)
def test_linear_init_is_the_straight_line(kind):
    w1, w2 = torch.randn(2, 30, dtype=torch.float64).unbind(0)
    control = curves.init_control(kind, w1, w2, 3, "linear")
    ts = torch.linspace(0, 1, 13, dtype=torch.float64)
    assert torch.allclose(curves.point(kind, control, ts), curves.line_points(w1, w2, ts))
    assert torch.equal(control[0], w1) and torch.equal(control[-1], w2)
    rand = curves.init_control(kind, w1, w2, 2, "random", fresh=lambda i: torch.full((30,), float(i)))
    assert torch.equal(rand[1], torch.zeros(30, dtype=torch.float64)) and torch.equal(rand[-1], w2)


# ----- bad input --------------------------------------------------------------------------
def _point(spec, seed=0, in_shape=(1, 8, 8), n_out=10):
    torch.manual_seed(seed)
    fm = FlatModel(build_model(spec, in_shape, n_out))
    return fm.point(model_spec=str(spec), status="ok")


def test_bad_input_is_rejected_before_training(tmp_path):
    with pytest.raises(ValueError, match="at least one bend"):
        curves.check_bends(0)
    with pytest.raises(ValueError, match="at least one bend"):
        curves.init_control("bezier", torch.zeros(3), torch.ones(3), 0)
    with pytest.raises(ValueError, match="unknown curve kind"):
        curves.point("spline", torch.zeros(3, 2), 0.5)
    io.save_point(_point(CNN), tmp_path / "a.pt")
    io.save_point(_point({**CNN, "width": 1.0}), tmp_path / "b.pt")
    with pytest.raises(io.ArtifactError, match="different parameter layouts"):
        curves.load_endpoints(tmp_path / "a.pt", tmp_path / "b.pt")
    with pytest.raises(io.ArtifactError, match="missing.pt does not exist"):
        curves.load_endpoints(tmp_path / "a.pt", tmp_path / "missing.pt")
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 50, 50, 16, 0)
    with pytest.raises(ValueError, match="at least one bend"):
        curves.train_curve(CNN, curves.CurveSettings(epochs=1), ds, ev, _point(CNN), _point(CNN, 1), "bezier", 0)
    with pytest.raises(io.ArtifactError, match="different parameter layouts"):
        curves.train_curve(CNN, curves.CurveSettings(epochs=1), ds, ev, _point(CNN), _point({**CNN, "width": 1.0}))


# ----- training and evaluation on digits ---------------------------------------------------
@pytest.fixture(scope="module")
def digits_curve():
    torch.set_num_threads(1)
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 400, 400, 64, 0)
    ends = [train_endpoint(CNN, TrainSettings(epochs=8, lr=3e-3), ds, ev, seed=s) for s in (0, 1)]
    res = curves.train_curve(CNN, curves.CurveSettings(epochs=8, lr=3e-3), ds, ev, ends[0].point, ends[1].point,
                             "bezier", 1, seed=0)
    fm = FlatModel(build_model(CNN, ds.in_shape, ds.num_outputs))
    ts = torch.linspace(0, 1, 21)
    w1, w2 = ends[0].point.flat, ends[1].point.flat
    along, ens = curves.evaluate_paths(fm, {"curve": curves.point("bezier", res.control, ts),
                                            "line": curves.line_points(w1, w2, ts)}, ts, ev, ds.task)
    return {"ends": ends, "res": res, "along": along, "ens": ens, "summary": curves.summarise(along)}


def test_curve_barrier_is_at_most_half_the_line_barrier(digits_curve):
    s = digits_curve["summary"].set_index(["path", "split", "metric"])["barrier"]
    assert s["line", "train", "loss"] > 0.5  # the straight line crosses a real barrier
    assert s["curve", "train", "loss"] <= 0.5 * s["line", "train", "loss"]
    assert s["curve", "test", "error"] <= 0.5 * s["line", "test", "error"]


def test_curve_reproduces_endpoints_and_their_metrics(digits_curve):
    res, ends = digits_curve["res"], digits_curve["ends"]
    assert torch.equal(res.control[0], ends[0].point.flat) and torch.equal(res.control[-1], ends[1].point.flat)
    assert torch.equal(curves.point("bezier", res.control, 0.0), ends[0].point.flat)
    assert torch.equal(curves.point("bezier", res.control, 1.0), ends[1].point.flat)
    along = digits_curve["along"]
    for t, end in ((0.0, ends[0]), (1.0, ends[1])):
        last = end.history[end.history.epoch == end.history.epoch.max()].set_index("split")
        for path in ("curve", "line"):
            at = along[(along.path == path) & (along.t == t)].set_index("split")
            for split in ("train", "test"):
                assert at.loc[split, "loss"] == pytest.approx(last.loc[split, "loss"], rel=1e-6, abs=1e-7)
                assert at.loc[split, "accuracy"] == pytest.approx(last.loc[split, "accuracy"], abs=1e-9)


def test_training_lowers_mean_loss_and_keeps_one_snapshot_per_epoch(digits_curve):
    res = digits_curve["res"]
    h = res.history
    assert res.status == "ok" and list(h.epoch) == list(range(9))
    assert h.mean_train_loss.iloc[-1] < 0.5 * h.mean_train_loss.iloc[0]
    assert len(res.snapshots) == 9 and torch.equal(res.snapshots[-1], res.control)
    assert not torch.equal(res.snapshots[0], res.snapshots[-1])
    lin = curves.init_control("bezier", res.control[0], res.control[-1], 1)
    assert torch.equal(res.snapshots[0], lin)


def test_ensemble_along_the_path(digits_curve):
    ens = digits_curve["ens"]
    test = ens[(ens.split == "test") & (ens.path == "curve")].set_index("t")
    # at t = 1 the ensemble is the reference ensemble of w1 and w2
    assert test.loc[1.0, "ensemble_loss"] == pytest.approx(test.loc[1.0, "reference_loss"], rel=1e-6)
    assert test.loc[1.0, "ensemble_accuracy"] == pytest.approx(test.loc[1.0, "reference_accuracy"])
    # at t = 0 the "ensemble" is w1 alone; adding the independent w2 lowers the NLL
    assert test.loc[0.0, "ensemble_loss"] == pytest.approx(test.loc[0.0, "single_loss"], rel=1e-6)
    assert test.loc[1.0, "ensemble_loss"] < test.loc[0.0, "ensemble_loss"]


# ----- resumption, BatchNorm, divergence (small MLP on the 1-D regression problem) ----------
def _reg():
    ds = data.load_dataset("regression1d")
    return ds, data.eval_data(ds, 1000, 1000, 32, 0)


def _reg_ends(ds, ev, spec=MLP):
    return [train_endpoint(spec, TrainSettings(epochs=5, lr=1e-2, batch_size=30), ds, ev, seed=s).point for s in (0, 1)]


def test_resume_gives_the_uninterrupted_curve(tmp_path):
    ds, ev = _reg()
    w1, w2 = _reg_ends(ds, ev)
    s = curves.CurveSettings(epochs=5, lr=1e-2, batch_size=30)
    full = curves.train_curve(MLP, s, ds, ev, w1, w2, "chain", 2, seed=3)
    state = tmp_path / "resume.pt"
    curves.train_curve(MLP, s, ds, ev, w1, w2, "chain", 2, seed=3, state_path=state, checkpoint_every=2, stop_after=3)
    assert state.exists()
    resumed = curves.train_curve(MLP, s, ds, ev, w1, w2, "chain", 2, seed=3, state_path=state, checkpoint_every=2)
    assert resumed.resumed_from == 2
    assert torch.equal(resumed.control, full.control)
    assert all(torch.equal(a, b) for a, b in zip(resumed.snapshots, full.snapshots)) and len(resumed.snapshots) == 6
    pd.testing.assert_frame_equal(resumed.history, full.history)


def test_batchnorm_policy_is_recorded_and_applied():
    ds, ev = _reg()
    spec = {**MLP, "batchnorm": True}
    w1, w2 = _reg_ends(ds, ev, spec)
    res = curves.train_curve(spec, curves.CurveSettings(epochs=2, lr=1e-2, batch_size=30), ds, ev, w1, w2)
    assert "recomputed at each point" in res.meta["bn_policy"] and res.meta["has_bn"]
    fm = FlatModel(build_model(spec, ds.in_shape, 1))
    ts = torch.linspace(0, 1, 5)
    along, _ = curves.evaluate_paths(fm, {"curve": curves.point("bezier", res.control, ts)}, ts, ev, ds.task)
    assert along["bn_policy"].str.contains("recomputed at each point").all()
    # the midpoint evaluated with recomputed statistics differs from one with the module's stale buffers
    mid = curves.point("bezier", res.control, 0.5)
    stale = fm.outputs(mid, ev.train_x)
    fresh = fm.outputs(mid, ev.train_x, fm.recompute_bn(mid, ev.bn_x))
    got = along[(along.t == 0.5) & (along.split == "train")]["loss"].item()
    assert got == pytest.approx(torch.nn.functional.mse_loss(fresh, ev.train_y).item(), rel=1e-5)
    assert not torch.allclose(stale, fresh)


def test_divergence_is_recorded_not_raised():
    ds, ev = _reg()
    w1, w2 = _reg_ends(ds, ev)
    res = curves.train_curve(MLP, curves.CurveSettings(epochs=3, optimizer="sgd", lr=1e8), ds, ev, w1, w2)
    assert res.status == "diverged" and (res.history.status == "diverged").all()
    assert len(res.snapshots) == 4 and torch.equal(res.control[0], w1.flat)
    along = pd.DataFrame({"path": "curve", "t": [0.0, 0.5, 1.0], "split": "train", "loss": [0.1, math.nan, 0.2],
                          "objective": 0.1, "error": 0.0, "arc_length": [0.0, 1.0, 2.0]})
    assert math.isnan(curves.summarise(along).set_index("metric").loc["loss", "barrier"])


# ----- the workflow ----------------------------------------------------------------------
CURVE_DIR = "results/digits/simplecnn/curves/bezier1/default/seed0-seed1"
REG_DIR = "results/regression1d/mlp/curves/bezier1/default/seed0-seed1"
TARGETS = ("results/digits/simplecnn/curves/summary.parquet", "results/digits/simplecnn/figures/curves_along_t.png",
           "results/digits/simplecnn/figures/curves_ensemble.png",
           "results/regression1d/mlp/figures/curves/bezier1/default/seed0-seed1/functions.png")


@pytest.mark.e2e
def test_tiny_curves_end_to_end(tiny_copy):
    tmp_path = tiny_copy  # the shared tiny run built every curve target
    base = tmp_path / CURVE_DIR
    cv = curves.load_curve(base / "curve.pt")
    w1 = io.load_point(tmp_path / "results/digits/simplecnn/endpoints/default/seed0/model.pt")
    w2 = io.load_point(tmp_path / "results/digits/simplecnn/endpoints/default/seed1/model.pt")
    assert cv["kind"] == "bezier" and cv["control"].shape == (3, w1.flat.numel())
    assert torch.equal(cv["control"][0], w1.flat) and torch.equal(cv["control"][-1], w2.flat)
    assert cv["meta"]["status"] == "ok" and "bn_policy" in cv["meta"]
    epochs = curves.load_curve_epochs(base / "epochs.pt")
    assert epochs["controls"].shape == (4, 3, w1.flat.numel()) and epochs["kind"] == "bezier"
    assert torch.equal(epochs["controls"][0, 0], w1.flat) and torch.equal(epochs["controls"][0, -1], w2.flat)
    assert torch.equal(epochs["controls"][0, 1], 0.5 * (w1.flat + w2.flat))  # linear init: the segment's midpoint
    assert torch.equal(epochs["controls"][-1], cv["control"])
    assert not (base / "resume.pt").exists()
    along = io.read_parquet(base / "along.parquet")
    assert set(along.path) == {"curve", "line"} and along.t.nunique() == 9
    assert {"dataset", "model", "setting", "seed_a", "seed_b", "kind", "bends", "t", "split", "loss", "objective",
            "accuracy", "error", "bn_policy", "arc_length"} <= set(along.columns)
    end = io.read_parquet(tmp_path / "results/digits/simplecnn/endpoints/default/seed0/metrics.parquet")
    end = end[end.epoch == end.epoch.max()].set_index("split")
    at0 = along[(along.path == "curve") & (along.t == 0)].set_index("split")
    assert at0.loc["test", "loss"] == pytest.approx(end.loc["test", "loss"], rel=1e-6)
    summary = io.read_parquet(tmp_path / "results/digits/simplecnn/curves/summary.parquet")
    assert set(summary.alignment) == {"none", "weight_matching"}  # the tiny config also aligns
    b = summary[summary.alignment == "none"].set_index(["path", "split", "metric"])["barrier"]
    assert b["curve", "train", "loss"] < b["line", "train", "loss"]
    log = io.read_parquet(base / "train_log.parquet")
    assert list(log.epoch) == [0, 1, 2, 3] and {"running_loss", "mean_train_loss", "kind", "lr"} <= set(log.columns)
    ens = io.read_parquet(base / "ensemble.parquet")
    assert {"ensemble_loss", "ensemble_accuracy", "reference_loss", "reference_accuracy"} <= set(ens.columns)
    pred = io.read_parquet(tmp_path / REG_DIR / "predictions.parquet")
    assert sorted(pred.t.unique()) == [0.0, 0.25, 0.5, 0.75, 1.0] and pred.x.nunique() == 50
    assert curves.load_curve_epochs(tmp_path / REG_DIR / "epochs.pt")["controls"].shape[0] == 21
    for fig in TARGETS[1:]:
        assert (tmp_path / fig).stat().st_size > 10_000

    # nothing left to do; editing the curve section reruns curves, never endpoints
    assert planned_jobs(snakemake(tmp_path, "-n", *TARGETS)) == {}
    cfg = yaml.safe_load(TINY.read_text())
    cfg["curves"]["lr"] = 0.01
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(tmp_path, "-n", *TARGETS, configfile=changed))
    # the digits curve and the curve to the aligned seed 1 rerun; the regression curve keeps its own settings
    assert jobs.get("train_curve") == 2 and "train_endpoint" not in jobs
    cfg = yaml.safe_load(TINY.read_text())
    cfg["curves"]["points"] = 11  # evaluation only: no retraining
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(tmp_path, "-n", *TARGETS, configfile=changed))
    # the digits curves (to seed 1 and to the aligned seed 1) and the regression curve are evaluated at curves.points
    assert jobs.get("evaluate_curve") == 3 and "train_curve" not in jobs and "train_endpoint" not in jobs
