"""Fast Geometric Ensembling (losslab.fge): schedule, member collection, BatchNorm, resume, evaluation."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from losslab import data, ensembles, fge, flat
from losslab.flat import FlatModel
from losslab.io import Point
from losslab.models import build_model
from losslab.training import cyclic_schedule, read_state

torch.set_num_threads(1)
MLP = {"name": "mlp", "width": 1.0, "dropout": 0.0, "batchnorm": False, "options": {"hidden": 16}}
BN_MLP = {**MLP, "batchnorm": True}


@pytest.fixture(scope="module")
def digits_small():
    """256 training images of digits and fixed evaluation subsets (120 + 120, 64 for BatchNorm)."""
    ds = data.load_dataset("digits")
    return dataclasses.replace(ds, train_x=ds.train_x[:256], train_y=ds.train_y[:256]), data.eval_data(ds, 120, 120, 64, 0)


def _start(ds, spec, seed=0):
    torch.manual_seed(seed)
    fm = FlatModel(build_model(spec, ds.in_shape, ds.num_outputs))
    return fm, Point(fm.flatten().clone(), fm.buffers(), {"status": "ok"})


def _flat_of(fm: FlatModel, model_state: dict) -> torch.Tensor:
    return torch.cat([model_state[name].reshape(-1) for name in fm.names])


# ----- the learning-rate schedule -------------------------------------------------------------
def test_linear_cycle_is_the_triangle():
    hi, lo, C = 0.1, 0.002, 10
    lr = cyclic_schedule(hi, lo, C, "linear")
    assert lr(0) == pytest.approx(hi - 0.2 * (hi - lo))  # u = 1/10 at the cycle's first step
    assert lr(4) == pytest.approx(lo, rel=1e-12)  # u = 1/2: the minimum, in the middle
    assert lr(9) == pytest.approx(hi, rel=1e-12)  # u = 1: back at the top at the cycle's end
    assert lr(7) == pytest.approx(lo + 0.6 * (hi - lo))
    values = [lr(k) for k in range(C)]
    assert all(a > b for a, b in zip(values[:4], values[1:5])) and all(a < b for a, b in zip(values[4:9], values[5:]))
    assert [lr(k + C) for k in range(C)] == values and [lr(k + 3 * C) for k in range(C)] == values


def test_cosine_cycle_falls_to_the_minimum_and_restarts():
    hi, lo, C = 0.1, 0.002, 11
    lr = cyclic_schedule(hi, lo, C, "cosine")
    assert lr(0) == hi and lr(C - 1) == pytest.approx(lo, abs=1e-15) and lr(C) == hi
    assert lr(5) == pytest.approx((hi + lo) / 2)  # the middle step of the cycle: half way down
    values = [lr(k) for k in range(C)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_settings_collect_at_the_low_end_and_refuse_bad_values():
    lin = fge.FgeSettings(cycle_epochs=4, n_members=3, shape="linear")
    assert lin.collect_epochs == [2, 6, 10] and lin.epochs == 10
    cos = fge.FgeSettings(cycle_epochs=3, n_members=2, shape="cosine")
    assert cos.collect_epochs == [3, 6] and cos.epochs == 6
    assert fge.FgeSettings.from_dict({"cycle_epochs": 2, "n_members": 5, "other": 1}).n_members == 5
    for bad, msg in (({"cycle_epochs": 3}, "fge.cycle_epochs = 3"), ({"shape": "saw"}, "fge.shape = 'saw'"),
                     ({"n_members": 0}, "fge.n_members = 0"), ({"lr_min": 0.2, "lr_max": 0.1}, "fge.lr_min = 0.2")):
        with pytest.raises(ValueError, match=msg):
            fge.FgeSettings(**bad)


# ----- training ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_one_member_per_cycle_collected_at_the_low_end(digits_small, tmp_path, shape):
    ds, ev = digits_small
    fm, start = _start(ds, MLP)
    s = fge.FgeSettings(cycle_epochs=2, n_members=3, lr_max=0.05, lr_min=0.001, shape=shape, batch_size=64)
    run = fge.train_fge(fm, start, ds, s, seed=0, bn_x=ev.bn_x)
    assert run.status == "ok" and run.members.shape == (3, fm.numel)
    h = run.history.set_index("epoch")
    assert list(h.index) == list(range(1, s.epochs + 1))
    assert list(h["members"]) == ([1, 1, 2, 2, 3] if shape == "linear" else [0, 1, 1, 2, 2, 3])
    for e in s.collect_epochs:  # the last step before a collection runs at the lowest rate
        assert h.loc[e, "lr_last"] == pytest.approx(s.lr_min, rel=1e-9) and h.loc[e, "lr_min"] == h.loc[e, "lr_last"]
    assert h["lr_max"].max() <= s.lr_max and h["lr_min"].min() == pytest.approx(s.lr_min, rel=1e-9)
    # member 2 is the network at the end of epoch collect_epochs[1]: compare with a run stopped there
    stop = s.collect_epochs[1]
    state = tmp_path / "resume.pt"
    fge.train_fge(fm, start, ds, s, seed=0, bn_x=ev.bn_x, state_path=state, checkpoint_every=1, stop_after=stop)
    saved = read_state(state)
    assert saved["epoch"] == stop
    assert torch.equal(_flat_of(fm, saved["state"]["model"]), run.members[1])
    assert not torch.equal(run.members[0], run.members[1]) and not torch.equal(run.members[0], start.flat)


def test_batchnorm_recomputed_for_each_member(digits_small, tmp_path):
    ds, ev = digits_small
    fm, start = _start(ds, BN_MLP)
    s = fge.FgeSettings(cycle_epochs=2, n_members=2, lr_max=0.05, lr_min=0.001)
    run = fge.train_fge(fm, start, ds, s, seed=0, bn_x=ev.bn_x)
    state = tmp_path / "resume.pt"
    fge.train_fge(fm, start, ds, s, seed=0, bn_x=ev.bn_x, state_path=state, checkpoint_every=1, stop_after=1)
    training_buffers = read_state(state)["state"]["model"]  # the network's running statistics at member 1
    member = run.member_buffers[0]
    key = next(k for k in member if k.endswith("running_mean"))
    assert not torch.allclose(member[key], training_buffers[key])
    reference = fm.load_into(run.members[0], build_model(BN_MLP, ds.in_shape, ds.num_outputs))
    torch.optim.swa_utils.update_bn(list(ev.bn_x.split(flat.BN_BATCH)), reference)
    for k, v in reference.named_buffers():
        assert torch.equal(member[k], v), k
    other = fge.train_fge(fm, start, ds, s, seed=0, bn_x=ev.bn_x, bn_batch=16)
    assert torch.equal(other.members[0], run.members[0])
    assert not torch.allclose(other.member_buffers[0][key.replace("mean", "var")],
                              member[key.replace("mean", "var")])  # the BN batch reaches the recompute


def test_resume_gives_the_uninterrupted_members(digits_small, tmp_path):
    ds, ev = digits_small
    fm, start = _start(ds, {**BN_MLP, "dropout": 0.2})
    s = fge.FgeSettings(cycle_epochs=2, n_members=3, lr_max=0.05, lr_min=0.001)
    full = fge.train_fge(fm, start, ds, s, seed=2, bn_x=ev.bn_x)
    state = tmp_path / "resume.pt"
    part = fge.train_fge(fm, start, ds, s, seed=2, bn_x=ev.bn_x, state_path=state, checkpoint_every=2, stop_after=3)
    assert part.members.shape[0] == 2 and read_state(state)["epoch"] == 2
    resumed = fge.train_fge(fm, start, ds, s, seed=2, bn_x=ev.bn_x, state_path=state, checkpoint_every=2)
    assert resumed.resumed_from == 2
    assert torch.equal(resumed.members, full.members)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(resumed.member_buffers, full.member_buffers) for k in a)
    pd.testing.assert_frame_equal(resumed.history, full.history)


def test_divergence_keeps_the_members_so_far(digits_small):
    ds, ev = digits_small
    fm, start = _start(ds, MLP)
    run = fge.train_fge(fm, start, ds, fge.FgeSettings(lr_max=1e6, lr_min=1e6, n_members=3), seed=0, bn_x=ev.bn_x)
    assert run.status == "diverged" and (run.history["status"] == "diverged").all()
    assert run.members.shape[0] == run.history["members"].iloc[-1] < 3
    assert bool(torch.isfinite(run.members).all())


# ----- evaluation ----------------------------------------------------------------------------------
def test_growing_ensembles_average_probabilities(digits_small):
    ds, ev = digits_small
    fm, start = _start(ds, BN_MLP)
    run = fge.train_fge(fm, start, ds, fge.FgeSettings(cycle_epochs=2, n_members=3, lr_max=0.05, lr_min=0.001),
                        seed=0, bn_x=ev.bn_x)
    table = ensembles.growing(fm, run.members, ev, ds.task, run.member_buffers)
    assert list(table.columns) == ["split", "n_members", "loss", "accuracy", "disagreement", "distance",
                                   "member_loss", "member_accuracy"]
    assert len(table) == 2 * 3 and list(table.n_members) == [1, 2, 3, 1, 2, 3]
    test = table[table.split == "test"].set_index("n_members")
    assert test.loc[1, "loss"] == pytest.approx(test.loc[1, "member_loss"], rel=1e-6)
    assert test.loc[1, "accuracy"] == test.loc[1, "member_accuracy"]
    x, y = ev.split("test")
    probs = [fm.outputs(v, x, b).softmax(-1) for v, b in zip(run.members[:2], run.member_buffers[:2])]
    p = (probs[0] + probs[1]) / 2
    assert test.loc[2, "loss"] == pytest.approx(-p.gather(1, y[:, None]).log().mean().item(), rel=1e-5)
    assert test.loc[2, "accuracy"] == pytest.approx((p.argmax(-1) == y).float().mean().item())
    single = -probs[1].gather(1, y[:, None]).log().mean().item()
    assert test.loc[2, "member_loss"] == pytest.approx(single, rel=1e-5)
    assert math.isfinite(test.loc[3, "loss"])
    assert math.isnan(test.loc[1, "distance"]) and test.loc[2, "distance"] == pytest.approx(
        float((run.members[0] - run.members[1]).double().norm()), rel=1e-6)
    pred = [fm.outputs(v, x, b).argmax(-1) for v, b in zip(run.members[:2], run.member_buffers[:2])]
    assert test.loc[2, "disagreement"] == pytest.approx((pred[0] != pred[1]).float().mean().item())
