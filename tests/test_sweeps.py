"""Tests of the sweep stages: radial tunnel widths (losslab.tunnels) and SWA (losslab.swa)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY, planned_jobs, snakemake
from losslab import data, ensembles, io, swa, tunnels
from losslab.flat import FlatModel, evaluate
from losslab.io import Point
from losslab.models import build_model

torch.set_num_threads(1)


# ----- tunnels: bisection ------------------------------------------------------------------

def quadratic(w, a, loss0=0.1):
    """L(v) = loss0 + (v - w)^T diag(a) (v - w), batched over rows."""
    return lambda vecs: loss0 + ((vecs - w) ** 2 * a).sum(-1)


def test_bisection_finds_known_threshold_on_quadratic():
    g = torch.Generator().manual_seed(0)
    d = 50
    w = torch.randn(d, generator=g, dtype=torch.float64)
    a = torch.rand(d, generator=g, dtype=torch.float64) * 2 + 0.5
    dirs = torch.randn(6, d, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    curv = (dirs ** 2 * a).sum(1)
    # absolute threshold 2.0: loss0 + r^2 curv = 2  =>  r = sqrt(1.9 / curv)
    res = tunnels.tunnel_widths(quadratic(w, a), w, dirs, r_max=5.0, threshold=2.0, mode="absolute",
                                profile_points=6, steps=40)
    expected = torch.sqrt((2.0 - 0.1) / curv)
    assert res.reached.all()
    assert torch.allclose(res.widths, expected, atol=1e-9)
    assert res.threshold == 2.0 and res.loss0 == pytest.approx(0.1)
    assert res.profile.shape == (6, 6)
    # relative threshold 10x the optimum's loss: r = sqrt(0.9 / curv)
    rel = tunnels.tunnel_widths(quadratic(w, a), w, dirs, r_max=5.0, threshold=10.0, mode="relative",
                                profile_points=3, steps=40)
    assert rel.threshold == pytest.approx(1.0)
    assert torch.allclose(rel.widths, torch.sqrt(0.9 / curv), atol=1e-9)


def test_bisection_censored_rays_and_threshold_below_optimum():
    w = torch.zeros(3, dtype=torch.float64)
    a = torch.tensor([1.0, 100.0, 1.0], dtype=torch.float64)
    dirs = torch.eye(3, dtype=torch.float64)[:2]  # along axis 0 (flat) and axis 1 (steep)
    res = tunnels.tunnel_widths(quadratic(w, a), w, dirs, r_max=1.0, threshold=2.0, profile_points=5, steps=30)
    assert res.reached.tolist() == [False, True]
    assert res.widths[0] == 1.0  # censored at r_max
    assert res.widths[1] == pytest.approx(math.sqrt(1.9 / 100), abs=1e-8)
    below = tunnels.tunnel_widths(quadratic(w, a), w, dirs, r_max=1.0, threshold=0.05, profile_points=5)
    assert below.widths.tolist() == [0.0, 0.0] and below.reached.all()


def test_bisection_returns_first_crossing_not_any_crossing():
    # loss rises above 1 at r = pi/6, falls below again after 5 pi/6, rises again at 7 pi/6
    w = torch.zeros(2, dtype=torch.float64)
    loss_of = lambda v: 2 * torch.sin((v - w).norm(dim=-1)).abs()  # noqa: E731
    dirs = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    res = tunnels.tunnel_widths(loss_of, w, dirs, r_max=4.0, threshold=1.0, profile_points=9, steps=40)
    assert torch.allclose(res.widths, torch.full((2,), math.pi / 6, dtype=torch.float64), atol=1e-9)


def test_bad_tunnel_inputs_raise_clear_errors():
    w = torch.zeros(3)
    dirs = torch.eye(3)
    with pytest.raises(ValueError, match="threshold mode"):
        tunnels.tunnel_widths(lambda v: v.sum(-1), w, dirs, 1.0, 1.0, mode="percent")
    with pytest.raises(ValueError, match="profile_points"):
        tunnels.tunnel_widths(lambda v: v.sum(-1), w, dirs, 1.0, 1.0, profile_points=1)
    with pytest.raises(ValueError, match="not finite"):
        tunnels.tunnel_widths(lambda v: torch.full(v.shape[:1], math.nan), w, dirs, 1.0, 1.0)
    fm = FlatModel(torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="normalization"):
        tunnels.random_directions(fm, fm.flatten(), 2, "layer")


# ----- tunnels: directions and batched evaluation -----------------------------------------

@pytest.fixture(scope="module")
def digits_small():
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 120, 120, 64, 0)
    small = data.Dataset("digits", ds.train_x[:256], ds.train_y[:256], ds.test_x[:128], ds.test_y[:128],
                         "classification", 10)
    return small, ev


def test_directions_unit_and_filter_normalised(digits_small):
    ds, _ = digits_small
    torch.manual_seed(0)
    fm = FlatModel(build_model({"name": "simplecnn", "width": 0.5}, ds.in_shape, 10))
    w = fm.flatten()
    g = torch.Generator().manual_seed(1)
    for norm in ("gaussian", "filter"):
        d = tunnels.random_directions(fm, w, 4, norm, g)
        assert d.shape == (4, fm.numel)
        assert torch.allclose(d.norm(dim=1), torch.ones(4), atol=1e-5)
    d = tunnels.random_directions(fm, w, 2, "filter", torch.Generator().manual_seed(2))
    # per filter, |d_filter| / |w_filter| is the same for every filter (one global rescale)
    wp, dp = fm.params(w), fm.params(d)
    conv = "features.0.weight"
    ratio = dp[conv][0].reshape(wp[conv].shape[0], -1).norm(dim=1) / wp[conv].reshape(wp[conv].shape[0], -1).norm(dim=1)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)


def test_batched_losses_match_one_point_at_a_time(digits_small):
    ds, ev = digits_small
    torch.manual_seed(0)
    fm = FlatModel(build_model({"name": "simplecnn", "width": 0.5}, ds.in_shape, 10))
    w = fm.flatten()
    vecs = w + 0.3 * torch.randn(5, fm.numel, generator=torch.Generator().manual_seed(3))
    batched = tunnels.batch_losses(fm, vecs, ev.train_x, ev.train_y, "classification", chunk=2)
    loop = torch.tensor([evaluate(fm, v, ev.train_x, ev.train_y, "classification")["loss"] for v in vecs])
    assert torch.allclose(batched, loop, atol=1e-5)


def test_batched_losses_with_batchnorm_recompute_statistics_per_point(digits_small):
    ds, ev = digits_small
    torch.manual_seed(0)
    fm = FlatModel(build_model({"name": "simplecnn", "width": 0.5, "batchnorm": True}, ds.in_shape, 10))
    w = fm.flatten()
    vecs = w + 0.2 * torch.randn(4, fm.numel, generator=torch.Generator().manual_seed(4))
    batched = tunnels.batch_losses(fm, vecs, ev.train_x, ev.train_y, "classification", bn_x=ev.bn_x, chunk=3)
    loop = torch.tensor([evaluate(fm, v, ev.train_x, ev.train_y, "classification", fm.recompute_bn(v, ev.bn_x))["loss"]
                         for v in vecs])
    assert torch.allclose(batched, loop, atol=1e-5)
    with pytest.raises(ValueError, match="bn_x"):
        tunnels.batch_losses(fm, vecs, ev.train_x, ev.train_y, "classification")


def test_tunnel_losses_of_diverged_points_are_infinite(digits_small):
    ds, ev = digits_small
    fm = FlatModel(build_model({"name": "simplecnn", "width": 0.5}, ds.in_shape, 10))
    vecs = torch.stack([fm.flatten(), torch.full((fm.numel,), math.nan)])
    losses = tunnels.batch_losses(fm, vecs, ev.train_x, ev.train_y, "classification")
    assert math.isfinite(float(losses[0])) and losses[1] == math.inf


def test_summarise_widths_marks_diverged_and_partial():
    rows = []
    for setting, statuses in (("a", ["ok", "ok"]), ("b", ["ok", "diverged"]), ("c", ["diverged", "diverged"])):
        for seed, st in enumerate(statuses):
            ok = st == "ok"
            for k in (range(3) if ok else [-1]):
                rows.append({"param": "lr", "value": {"a": 1.0, "b": 2.0, "c": 3.0}[setting], "setting": setting,
                             "seed": seed, "direction": k, "width": 2.0 + k if ok else math.nan,
                             "width_rel": 0.1, "reached": ok and k < 2, "threshold": 1.0, "loss0": 0.1,
                             "weight_norm": 10.0, "test_accuracy": 0.9, "status": st})
    s = tunnels.summarise_widths(pd.DataFrame(rows)).set_index("setting")
    assert s.loc["a", "status"] == "ok" and s.loc["b", "status"] == "partial" and s.loc["c", "status"] == "diverged"
    assert s.loc["a", "width_mean"] == pytest.approx(3.0) and s.loc["a", "n_rays"] == 6
    assert s.loc["a", "censored_fraction"] == pytest.approx(1 / 3)
    assert math.isnan(s.loc["c", "width_mean"]) and s.loc["c", "n_diverged"] == 2


# ----- SWA ------------------------------------------------------------------------------------

def _trained_start(ds, spec, seed=0):
    torch.manual_seed(seed)
    fm = FlatModel(build_model(spec, ds.in_shape, ds.num_outputs))
    return fm, Point(fm.flatten().clone(), fm.buffers(), {"status": "ok"})


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("schedule", ["constant", "cyclic"])
def test_swa_is_the_mean_of_the_snapshots(digits_small, batchnorm, schedule):
    ds, ev = digits_small
    fm, start = _trained_start(ds, {"name": "mlp", "batchnorm": batchnorm, "options": {"hidden": 16}})
    s = swa.SwaSettings(lr=0.05, schedule=schedule, epochs=3, snapshot_every=1, optimizer="sgd")
    run = swa.continue_training(fm, start, ds, s, seed=0, bn_x=ev.bn_x)
    assert run.status == "ok" and run.snapshots.shape == (3, fm.numel)
    assert not torch.allclose(run.snapshots[0], run.snapshots[-1])  # training moved
    assert torch.allclose(run.swa, run.snapshots.mean(0), atol=1e-6)
    if batchnorm:  # BN statistics recomputed at the mean, not copied from a snapshot
        key = next(k for k in run.swa_buffers if k.endswith("running_mean"))
        expect = fm.recompute_bn(run.swa, ev.bn_x)[key]
        assert torch.allclose(run.swa_buffers[key], expect, atol=1e-4)
    pts, lines = swa.evaluate_run(fm, run, ev, ds.task, line_points=3)
    assert set(pts["kind"]) == {"snapshot", "swa", "ensemble"}
    seg = lines[lines["kind"] == "line"]
    assert len(seg) == 2 * 2 * 3  # splits x pairs x points
    # segment ends are the snapshots themselves
    snap = pts[(pts["kind"] == "snapshot") & (pts["split"] == "train")].set_index("index")["loss"]
    first = seg[(seg["split"] == "train") & (seg["pair"] == 0)].sort_values("t")["loss"].tolist()
    assert first[0] == pytest.approx(snap[0], rel=1e-5) and first[-1] == pytest.approx(snap[1], rel=1e-5)
    summ = swa.summarise(pts, lines)
    assert list(summ["split"]) == ["train", "test"] and (summ["n_snapshots"] == 3).all()
    snaps = pts[pts["kind"] == "snapshot"].groupby("split")
    s = summ.set_index("split")
    for split in ("train", "test"):  # the summary reads the right rows (best: highest accuracy, then lowest loss)
        assert s.loc[split, "snapshot_mean_accuracy"] == pytest.approx(snaps.get_group(split)["accuracy"].mean())
        best = snaps.get_group(split).sort_values(["accuracy", "loss"], ascending=[False, True]).iloc[0]
        assert s.loc[split, "best_loss"] == pytest.approx(best["loss"])


def test_swa_resume_gives_the_uninterrupted_run(digits_small, tmp_path):
    ds, ev = digits_small
    spec = {"name": "mlp", "batchnorm": True, "dropout": 0.2, "options": {"hidden": 16}}
    fm, start = _trained_start(ds, spec)
    s = swa.SwaSettings(lr=0.05, schedule="cyclic", epochs=4, snapshot_every=1, optimizer="sgd")
    full = swa.continue_training(fm, start, ds, s, seed=1, bn_x=ev.bn_x)
    state = tmp_path / "resume.pt"
    swa.continue_training(fm, start, ds, s, seed=1, bn_x=ev.bn_x, state_path=state, checkpoint_every=2, stop_after=3)
    assert io.load_tensors(state)["epoch"] == 2
    resumed = swa.continue_training(fm, start, ds, s, seed=1, bn_x=ev.bn_x, state_path=state, checkpoint_every=2)
    assert resumed.resumed_from == 2 and full.resumed_from == 0
    assert torch.equal(resumed.snapshots, full.snapshots) and torch.equal(resumed.swa, full.swa)
    assert all(torch.equal(resumed.swa_buffers[k], v) for k, v in full.swa_buffers.items())
    assert all(torch.equal(a[k], b[k]) for a, b in zip(resumed.snapshot_buffers, full.snapshot_buffers) for k in a)
    pd.testing.assert_frame_equal(resumed.history, full.history)
    assert list(full.history["snapshots"]) == [1, 2, 3, 4]


def test_cyclic_schedule_restarts_every_cycle():
    s = swa.SwaSettings(lr=0.1, schedule="cyclic", epochs=4, snapshot_every=2, cycle_min_ratio=0.01)
    spe = 5
    lr_at = swa.learning_rate(s, spe)
    lrs = [lr_at(k) for k in range(4 * spe)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(0.001) and lrs[10] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs[:9], lrs[1:10]))
    assert swa.learning_rate(swa.SwaSettings(lr=0.1, epochs=4), spe)(7) == 0.1


def test_ensemble_averages_probabilities():
    y = torch.tensor([0, 1])
    o1 = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    o2 = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    p = (o1.softmax(-1) + o2.softmax(-1)) / 2
    m = ensembles.ensemble_metrics([o1, o2], y, "classification")
    assert m["loss"] == pytest.approx(-(p[0, 0].log() + p[1, 1].log()).item() / 2, rel=1e-6)
    assert m["accuracy"] == pytest.approx(float((p.argmax(-1) == y).float().mean()))


def test_swa_settings_reject_too_few_snapshots():
    with pytest.raises(ValueError, match="swa.snapshot_every"):
        swa.SwaSettings(lr=0.1, epochs=3, snapshot_every=2)
    with pytest.raises(ValueError, match="schedule"):
        swa.SwaSettings(lr=0.1, schedule="step")


def test_swa_diverges_without_crashing(digits_small):
    ds, ev = digits_small
    fm, start = _trained_start(ds, {"name": "mlp", "options": {"hidden": 16}})
    run = swa.continue_training(fm, start, ds, swa.SwaSettings(lr=1e6, epochs=2, snapshot_every=1), 0, ev.bn_x)
    assert run.status == "diverged"
    pts, lines = swa.evaluate_run(fm, run, ev, ds.task)
    assert pts["loss"].isna().all()
    assert swa.summarise(pts, lines)["swa_accuracy"].isna().all()


# ----- workflow -------------------------------------------------------------------------------

def _write(tmp_path, name, cfg):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


# A tiny sweep through both stages. lr 1e6 with SGD drives the loss to NaN (lr 10 only
# collapses the network to chance level with finite loss on digits).
E2E = {
    "endpoints": {"seeds": [0], "train": {"optimizer": "sgd", "lr": 0.05, "epochs": 3}},
    "tunnels": {"seeds": [0], "sweep": {"lr": [0.05, 1e6], "batch_size": [], "l2": [], "dropout": [], "width": []},
                "directions": 3, "profile_points": 5, "bisection_steps": 5, "r_max": 10.0,
                "slices": {"enabled": True, "extent": 10.0, "resolution": 5}},
    "swa": {"seeds": [0], "lrs": [0.05, 1e6], "schedules": ["constant", "cyclic"], "epochs": 2, "snapshot_every": 1,
            "line_points": 3},
}
TARGETS = ["results/digits/simplecnn/figures/tunnel_widths.png", "results/digits/simplecnn/figures/tunnel_profiles.png",
           "results/digits/simplecnn/figures/swa_accuracy.png", "results/digits/simplecnn/figures/swa_lines.png",
           "results/digits/simplecnn/figures/planes/tunnel-default-seed0.png",
           "results/digits/simplecnn/figures/planes/tunnel-lr-1e06-seed0.png"]


@pytest.mark.e2e
def test_tiny_sweep_end_to_end_with_a_diverged_setting(tmp_path):
    extra = _write(tmp_path, "e2e.yaml", E2E)
    args = ("--configfile", str(TINY), str(extra))
    snakemake(tmp_path, *TARGETS, *args, configfile=None)  # green although one setting diverges
    base = tmp_path / "results/digits/simplecnn"
    for t in TARGETS:
        assert (tmp_path / t).stat().st_size > 0

    summ = io.read_parquet(base / "tunnels/summary.parquet").set_index("setting")
    assert summ.loc["lr-1e06", "status"] == "diverged" and math.isnan(summ.loc["lr-1e06", "width_mean"])
    assert summ.loc["default", "status"] == "ok"  # the base value reuses the `default` endpoints
    assert 0 < summ.loc["default", "width_mean"] <= 10.0
    widths = io.read_parquet(base / "tunnels/widths.parquet")
    assert (widths[widths["setting"] == "lr-1e06"]["status"] == "diverged").all()
    assert len(widths[widths["setting"] == "default"]) == 3
    prof = io.read_parquet(base / "tunnels/profiles.parquet")
    assert sorted(prof["r"].unique()) == pytest.approx([0, 2.5, 5, 7.5, 10])

    swa_s = io.read_parquet(base / "swa/summary.parquet")
    assert set(swa_s.loc[swa_s["lr"] == 1e6, "status"]) == {"diverged"}
    ok = swa_s[(swa_s["lr"] == 0.05) & (swa_s["split"] == "test")]
    assert len(ok) == 2 and (ok["status"] == "ok").all() and ok["ensemble_accuracy"].between(0, 1).all()
    snaps = io.load_tensors(base / "swa/constant/lr0.05/seed0/snapshots.pt")
    assert snaps["snapshots"].shape[0] == 2
    assert torch.allclose(snaps["swa"], snaps["snapshots"].mean(0), atol=1e-6)

    # the 2-D slice around the optimum (planes engine, unit directions): a well, lowest in the middle
    grid = io.read_parquet(base / "planes/tunnel-default-seed0/grid.parquet")
    train = grid[grid["split"] == "train"]
    assert len(train) == 5 * 5  # tunnels.slices.resolution, not planes.resolution
    r = (train["x"] ** 2 + train["y"] ** 2) ** 0.5
    assert train["x"].min() == pytest.approx(-10.0) and train["x"].max() == pytest.approx(10.0)
    assert train.loc[r <= r.quantile(0.25), "loss"].mean() < train.loc[r >= r.quantile(0.75), "loss"].mean()

    # editing the swa section reruns only SWA jobs, never endpoints or tunnels
    more = _write(tmp_path, "more.yaml", {"swa": {"lrs": [0.05, 1e6, 0.01]}})
    proc = snakemake(tmp_path, *TARGETS, "-n", "--configfile", str(TINY), str(extra), str(more), configfile=None)
    jobs = planned_jobs(proc)
    assert jobs.get("swa_run") == 1 and "train_endpoint" not in jobs and "tunnel_widths" not in jobs  # seed 0's job


def test_chunk_for_budget_shrinks_with_data_and_grows_with_budget(digits_small):
    ds, _ = digits_small
    fm = FlatModel(build_model({"name": "simplecnn"}, ds.in_shape, 10))
    acts = tunnels.activation_floats(fm.module, ds.in_shape)
    assert acts >= 16 * 8 * 8  # at least the first conv's output
    small = tunnels.chunk_for_budget(fm, ds.in_shape, 1000, 64)
    big = tunnels.chunk_for_budget(fm, ds.in_shape, 1000, 1024)
    assert 1 <= small < big
    assert tunnels.chunk_for_budget(fm, ds.in_shape, 100, 64) > small
