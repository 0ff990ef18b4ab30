import dataclasses
import math

import pytest
import torch

from losslab import data, io
from losslab.models import build_model
from losslab.seeds import derive_seed
from losslab.train import TrainSettings, train_endpoint
from losslab.training import read_state

SPEC = {"name": "simplecnn", "width": 0.5, "dropout": 0.0, "batchnorm": False, "options": {}}


def _data():
    ds = data.load_dataset("digits")
    return ds, data.eval_data(ds, 200, 200, 64, seed=0)


def test_training_lowers_loss_and_records_history():
    ds, ev = _data()
    res = train_endpoint(SPEC, TrainSettings(epochs=3, lr=3e-3, batch_size=32), ds, ev, seed=0)
    h = res.history
    assert res.status == "ok"
    assert set(h.columns) >= {"epoch", "split", "loss", "accuracy", "status"}
    test = h[h.split == "test"].set_index("epoch")
    assert test.loc[3, "loss"] < 0.5 * test.loc[0, "loss"]
    assert test.loc[3, "accuracy"] > 0.8
    assert res.point.flat.numel() == sum(p.numel() for p in build_model(SPEC, (1, 8, 8), 10).parameters())


def test_same_seed_same_checkpoint_bytes(tmp_path):
    ds, ev = _data()
    for i in range(2):
        res = train_endpoint(SPEC, TrainSettings(epochs=2), ds, ev, seed=5)
        io.save_point(res.point, tmp_path / f"{i}.pt")
    assert (tmp_path / "0.pt").read_bytes() == (tmp_path / "1.pt").read_bytes()
    other = train_endpoint(SPEC, TrainSettings(epochs=2), ds, ev, seed=6)
    assert not torch.equal(other.point.flat, io.load_point(tmp_path / "0.pt").flat)


def test_divergence_is_recorded_not_raised():
    ds, ev = _data()
    res = train_endpoint(SPEC, TrainSettings(optimizer="sgd", lr=1e6, momentum=0.9, epochs=3), ds, ev, seed=0)
    assert res.status == "diverged"
    assert (res.history["status"] == "diverged").all()
    assert res.point.meta["status"] == "diverged"
    assert math.isnan(res.history["loss"].iloc[-1])


def test_resume_gives_the_uninterrupted_result(tmp_path):
    ds, ev = _data()
    full = train_endpoint(SPEC, TrainSettings(epochs=4), ds, ev, seed=1)
    state = tmp_path / "resume.pt"
    part = train_endpoint(SPEC, TrainSettings(epochs=4), ds, ev, seed=1, state_path=state, checkpoint_every=2, stop_after=3)
    assert state.exists() and part.point.flat.shape == full.point.flat.shape
    resumed = train_endpoint(SPEC, TrainSettings(epochs=4), ds, ev, seed=1, state_path=state, checkpoint_every=2)
    assert resumed.resumed_from == 2
    assert torch.equal(resumed.point.flat, full.point.flat)
    assert resumed.history.reset_index(drop=True).equals(full.history.reset_index(drop=True))


def test_sgd_schedules_run():
    ds, ev = _data()
    for sched in ("cosine", "step"):
        res = train_endpoint(SPEC, TrainSettings(optimizer="sgd", lr=0.05, schedule=sched, epochs=2), ds, ev, seed=0)
        assert res.status == "ok"
        assert res.history["lr"].iloc[-1] < 0.05


# ----- spawning copies from a saved epoch (Frankle et al.'s instability) ---------------------------
def _small():
    ds, ev = _data()
    return dataclasses.replace(ds, train_x=ds.train_x[:300], train_y=ds.train_y[:300]), ev


def test_spawned_copies_share_the_first_k_epochs_and_differ_after(tmp_path):
    ds, ev = _small()
    s = TrainSettings(epochs=4)
    plain = train_endpoint(SPEC, s, ds, ev, seed=3)
    parent = train_endpoint(SPEC, s, ds, ev, seed=3, save_states_at={2: tmp_path / "k2.pt"})
    assert torch.equal(parent.point.flat, plain.point.flat) and parent.history.equals(plain.history)  # saving is free
    at_k = train_endpoint(SPEC, s, ds, ev, seed=3, stop_after=2)
    saved = read_state(tmp_path / "k2.pt")
    assert saved["epoch"] == 2
    saved_flat = torch.cat([v.reshape(-1) for k, v in saved["state"]["model"].items() if k in dict(
        build_model(SPEC, (1, 8, 8), 10).named_parameters())])
    assert torch.equal(saved_flat, at_k.point.flat)  # the saved state is the run's epoch 2

    copies = [train_endpoint(SPEC, s, ds, ev, seed=3, spawn_from=tmp_path / "k2.pt", copy=c) for c in (0, 1)]
    for c, res in enumerate(copies):
        assert res.spawned_at == 2 and res.point.meta["spawned_at"] == 2 and res.point.meta["copy"] == c
        assert res.history[res.history.epoch <= 2].equals(parent.history[parent.history.epoch <= 2])
        assert list(res.history.epoch.unique()) == [0, 1, 2, 3, 4]
    assert not torch.equal(copies[0].point.flat, copies[1].point.flat)
    assert not torch.equal(copies[0].point.flat, parent.point.flat)
    after = [res.history[res.history.epoch == 3].reset_index(drop=True) for res in copies]
    assert not after[0].equals(after[1])  # they part at epoch 3
    again = train_endpoint(SPEC, s, ds, ev, seed=3, spawn_from=tmp_path / "k2.pt", copy=1)
    assert torch.equal(again.point.flat, copies[1].point.flat)  # a copy is reproducible


def test_copy_spawned_at_zero_is_the_fresh_run_with_its_data_seed(tmp_path):
    ds, ev = _small()
    s = TrainSettings(epochs=3)
    train_endpoint(SPEC, s, ds, ev, seed=4, save_states_at={0: tmp_path / "k0.pt"}, stop_after=1)
    spawned = train_endpoint(SPEC, s, ds, ev, seed=4, spawn_from=tmp_path / "k0.pt", copy=2)
    fresh = train_endpoint(SPEC, s, ds, ev, seed=4, data_seed=derive_seed(4, "spawn", 2))
    assert torch.equal(spawned.point.flat, fresh.point.flat)
    assert spawned.history.equals(fresh.history)


def test_a_spawned_copy_resumes_and_refuses_foreign_states(tmp_path):
    ds, ev = _small()
    s = TrainSettings(epochs=4)
    train_endpoint(SPEC, s, ds, ev, seed=5, save_states_at={1: tmp_path / "k1.pt"})
    full = train_endpoint(SPEC, s, ds, ev, seed=5, spawn_from=tmp_path / "k1.pt", copy=1)
    state = tmp_path / "copy-resume.pt"
    train_endpoint(SPEC, s, ds, ev, seed=5, spawn_from=tmp_path / "k1.pt", copy=1, state_path=state,
                   checkpoint_every=2, stop_after=2)
    assert read_state(state)["epoch"] == 2
    resumed = train_endpoint(SPEC, s, ds, ev, seed=5, spawn_from=tmp_path / "k1.pt", copy=1, state_path=state,
                             checkpoint_every=2)
    assert resumed.resumed_from == 2 and torch.equal(resumed.point.flat, full.point.flat)
    assert resumed.history.equals(full.history)
    with pytest.raises(ValueError, match="spawn state was saved by a run with other settings"):
        train_endpoint(SPEC, s, ds, ev, seed=6, spawn_from=tmp_path / "k1.pt")
    with pytest.raises(io.ArtifactError, match="missing.pt does not exist"):
        train_endpoint(SPEC, s, ds, ev, seed=5, spawn_from=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"save_states_at: epochs \[5\] are outside 0..4"):
        train_endpoint(SPEC, s, ds, ev, seed=5, save_states_at={5: tmp_path / "k5.pt"})
