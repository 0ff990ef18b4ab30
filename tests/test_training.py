"""The training scaffold (losslab.training), derived seeds and the BatchNorm batch default."""
from __future__ import annotations

import dataclasses
import io as _io
import logging
import math
import re
import sys

import numpy as np
import pytest
import torch

from losslab import data, flat, training
from losslab.device import setup_job
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.seeds import derive_seed
from losslab.train import TrainSettings, train_endpoint

torch.set_num_threads(1)


# ----- derived seeds ------------------------------------------------------------------------
def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "data-order") == 6320046702449097036  # the same on every machine and version
    assert derive_seed(np.int64(3), "spawn", np.int32(2)) == derive_seed(3, "spawn", 2)
    seeds = {derive_seed(s, k, i) for s in range(20) for k in ("data-order", "spawn", "curve") for i in range(20)}
    assert len(seeds) == 20 * 3 * 20  # consecutive seeds and indices never collide
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(0, 1) != derive_seed(0, "1")
    assert derive_seed(0, "a", "b") != derive_seed(0, "b", "a")
    assert derive_seed(1, "data-order") != derive_seed(0, "data-order")
    for bad in ((1.0, "x"), (0, 1.5), (0, True), ("0", "x")):
        with pytest.raises(TypeError, match="derive_seed"):
            derive_seed(*bad)


# ----- a toy job ------------------------------------------------------------------------------
def _quadratic_job(lr: float, epochs: int = 6, seen=None) -> tuple[training.Job, torch.nn.Parameter]:
    """Minimise ||w||^2 with SGD on a 3-vector; ``seen`` collects (epoch, ok) of every record call."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = training.make_optimizer([w], "sgd", lr, momentum=0.0)

    def record(epoch, stats, ok):
        if seen is not None:
            seen.append((epoch, ok))
        return [{"epoch": epoch, "running_loss": stats.mean("loss"), "w0": float(w[0].detach())}]

    job = training.Job(opt, lambda step: lr, lambda idx: {"loss": w.pow(2).sum()}, record, [w], epochs,
                       torch.Generator(), log_epochs=False)
    return job, w


def test_divergence_is_recorded_not_raised():
    seen = []
    job, w = _quadratic_job(lr=1e30, seen=seen)  # |w| grows by 2e30 per step: inf, then nan
    run = training.fit(job)
    assert run.status == "diverged"
    assert seen[-1][1] is False and all(ok for _, ok in seen[:-1])  # exactly the last epoch is not ok
    assert len(seen) < job.epochs + 1  # stopped at the diverged epoch
    assert (run.history["status"] == "diverged").all() and list(run.history.epoch) == [e for e, _ in seen]
    assert not torch.isfinite(w).all()
    ok_job, _ = _quadratic_job(lr=0.1)
    good = training.fit(ok_job)
    assert good.status == "ok" and list(good.history.epoch) == list(range(7))
    assert good.history.w0.iloc[-1] == pytest.approx(0.8 ** 6)


def test_fit_refuses_bad_requests_before_any_work(tmp_path):
    job, w = _quadratic_job(lr=0.1)
    with pytest.raises(ValueError, match=r"save_states_at: epochs \[9\] are outside 0..6"):
        training.fit(job, save_states_at={9: tmp_path / "s.pt"})
    with pytest.raises(ValueError, match="no resumable state"):
        training.fit(job, state_path=tmp_path / "r.pt", checkpoint_every=1)
    assert torch.equal(w.detach(), torch.ones(3))  # nothing was trained
    with pytest.raises(ValueError, match="shape = 'saw' is not allowed; allowed values: linear, cosine"):
        training.cyclic_schedule(1.0, 0.1, 4, "saw")
    with pytest.raises(ValueError, match="train.schedule = 'poly' is not allowed"):
        training.epoch_schedule("poly", 0.1, 3, key="train.schedule")
    with pytest.raises(ValueError, match="curves.optimizer = 'rmsprop' is not allowed; allowed values: adam, sgd"):
        training.make_optimizer([w], "rmsprop", 0.1, key="curves.optimizer")


def test_epoch_schedules():
    cos = training.epoch_schedule("cosine", 0.1, epochs=4, steps_per_epoch=3)
    assert [cos(s) for s in (0, 2, 3, 11)] == pytest.approx([0.1, 0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2,
                                                            0.1 * (1 + math.cos(3 * math.pi / 4)) / 2])
    step = training.epoch_schedule("step", 1.0, epochs=8, steps_per_epoch=2)
    assert [step(s) for s in (7, 8, 11, 12, 15)] == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])
    assert training.epoch_schedule("constant", 0.3, 5)(99) == 0.3


# ----- the L2 convention ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_is_the_gradient_of_the_l2_term(name):
    """weight_decay = l2 in the optimiser updates the weights exactly as minimising
    data loss + 0.5 * l2 * ||w||^2 with no weight decay."""
    l2, lr = 0.3, 0.05
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    before = a.weight.detach().clone()
    opt_a = training.make_optimizer(a.parameters(), name, lr, momentum=0.0, l2=l2)
    opt_b = training.make_optimizer(b.parameters(), name, lr, momentum=0.0, l2=l2, l2_in_loss=True)
    assert all(group["weight_decay"] == 0.0 for group in opt_b.param_groups)
    for _ in range(3):
        for model, opt, penalty in ((a, opt_a, False), (b, opt_b, True)):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            if penalty:
                loss = loss + training.l2_penalty(torch.cat([p.reshape(-1) for p in model.parameters()]), l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)
    assert not torch.allclose(a.weight, before)  # it trained


def test_curve_l2_acts_on_phi_t():
    """For a curve the penalty is on phi(t): its gradient with respect to the bend is
    c_1(t) * (grad of the data loss at phi(t) + l2 * phi(t))."""
    l2, t = 0.2, 0.3
    w1, theta0, w2 = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).unbind(0)
    theta = theta0.clone().requires_grad_(True)
    c = torch.tensor([(1 - t) ** 2, 2 * t * (1 - t), t ** 2], dtype=torch.float64)
    phi = c[0] * w1 + c[1] * theta + c[2] * w2
    data_loss = torch.sin(phi).sum()
    (data_loss + training.l2_penalty(phi, l2)).backward()
    expect = c[1] * (torch.cos(phi.detach()) + l2 * phi.detach())
    assert torch.allclose(theta.grad, expect)
    assert training.l2_penalty(phi, l2).item() == pytest.approx(0.5 * l2 * float(phi.detach().pow(2).sum()))


# ----- resumable state: every stream ------------------------------------------------------------
SPEC = {"name": "mlp", "width": 1.0, "dropout": 0.3, "batchnorm": True, "options": {"hidden": 16}}


def _digits_crop():
    """A small digits set with random-crop augmentation: the data generator draws crops, the
    torch generator draws dropout masks, so both streams matter for resumption."""
    ds = data.load_dataset("digits")
    small = dataclasses.replace(ds, train_x=ds.train_x[:200], train_y=ds.train_y[:200], augment="crop")
    return small, data.eval_data(ds, 100, 100, 64, seed=0)


def test_resume_restores_every_random_stream(tmp_path):
    ds, ev = _digits_crop()
    s = TrainSettings(epochs=4, lr=3e-3, batch_size=32)
    full = train_endpoint(SPEC, s, ds, ev, seed=2)
    state = tmp_path / "resume.pt"
    train_endpoint(SPEC, s, ds, ev, seed=2, state_path=state, checkpoint_every=1, stop_after=3)
    assert training.read_state(state)["epoch"] == 3
    torch.manual_seed(12345)  # whatever the caller did to the global stream in between
    resumed = train_endpoint(SPEC, s, ds, ev, seed=2, state_path=state, checkpoint_every=1)
    assert resumed.resumed_from == 3
    assert torch.equal(resumed.point.flat, full.point.flat)
    assert all(torch.equal(resumed.point.buffers[k], v) for k, v in full.point.buffers.items())
    assert resumed.history.equals(full.history)
    other = train_endpoint(SPEC, s, ds, ev, seed=2, data_seed=derive_seed(2, "other"))
    assert other.history.iloc[:2].equals(full.history.iloc[:2])  # same initialisation
    assert not torch.equal(other.point.flat, full.point.flat)  # other noise


# ----- progress and logging ------------------------------------------------------------------------
class _Terminal(_io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_has_one_plain_line_per_epoch_and_no_progress_bar(tmp_path, monkeypatch):
    ds, ev = _digits_crop()
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # setup_job redirects both; restored after the test
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    log_path = tmp_path / "job.log"
    logger = setup_job(str(log_path))
    try:
        train_endpoint(SPEC, TrainSettings(epochs=3, batch_size=32), ds, ev, seed=0)
    finally:
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logging.captureWarnings(False)
        sys.stderr.close()
    text = log_path.read_text()
    assert "\r" not in text and "it/s" not in text
    lines = text.splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) ")
    assert lines and all(stamp.match(line) for line in lines), lines
    epochs = [line for line in lines if re.search(r" INFO epoch \d/3: split train loss ", line)]
    assert len(epochs) == 3 and all("; split test loss " in line for line in epochs)

    terminal = _Terminal()  # on a terminal the scaffold shows a progress bar
    monkeypatch.setattr(sys, "stderr", terminal)
    logging.getLogger("losslab").setLevel(logging.INFO)
    train_endpoint(SPEC, TrainSettings(epochs=2, batch_size=32), ds, ev, seed=0)
    assert "2/2" in terminal.getvalue()


# ----- the BatchNorm recompute batch -----------------------------------------------------------------
def test_bn_batch_is_one_default_read_at_call_time(monkeypatch):
    torch.manual_seed(0)
    module = build_model({"name": "mlp", "batchnorm": True, "options": {"hidden": 8}}, (1, 8, 8), 10)
    fm = FlatModel(module)
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    vec = fm.flatten()

    def reference(batch):
        m = fm.load_into(vec, build_model({"name": "mlp", "batchnorm": True, "options": {"hidden": 8}}, (1, 8, 8), 10))
        torch.optim.swa_utils.update_bn(list(x.split(batch)), m)
        return {k: v for k, v in m.named_buffers() if k.endswith("running_var")}

    key = next(iter(reference(flat.BN_BATCH)))
    assert torch.allclose(fm.recompute_bn(vec, x)[key], reference(flat.BN_BATCH)[key])
    monkeypatch.setattr(flat, "BN_BATCH", 16)
    small = fm.recompute_bn(vec, x)[key]
    assert torch.allclose(small, reference(16)[key])
    assert not torch.allclose(small, reference(256)[key])  # the batch really changes the statistics
    assert torch.allclose(fm.recompute_bn(vec, x, batch_size=32)[key], reference(32)[key])
