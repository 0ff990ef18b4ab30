import math

import torch

from losslab import data, io
from losslab.models import build_model
from losslab.train import TrainSettings, train_endpoint

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
