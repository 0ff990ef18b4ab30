"""Fast Geometric Ensembling (FGE; Garipov et al., 2018) from a trained endpoint.

From a trained network, training continues with a cyclical learning rate whose cycles last
``cycle_epochs`` epochs, and one network (a *member*) is collected per cycle where the learning
rate is lowest:

- ``linear``: the paper's triangle. Within a cycle of ``C`` steps the rate falls linearly from
  ``lr_max`` to ``lr_min`` over the first half and rises back over the second half; the member
  is collected at the minimum, after the first half (``cycle_epochs`` must be even, so that the
  minimum falls on an epoch boundary);
- ``cosine``: within a cycle the rate falls along a half cosine from ``lr_max`` to ``lr_min``
  and restarts; the member is collected at the end of the cycle.

Training stops at the last collection, so the budget of ``n_members`` members is
``(n_members - 1) * cycle_epochs + cycle_epochs / 2`` epochs (linear) or
``n_members * cycle_epochs`` epochs (cosine) on top of the endpoint's own training. The
optimiser is SGD with momentum by default; L2 follows the one convention of
:mod:`losslab.training` (``weight_decay = l2``). The run is a use of the training scaffold:
resumable (the members collected so far are part of the state), ``diverged`` recorded.

BatchNorm: every member's statistics are recomputed at collection with
``torch.optim.swa_utils.update_bn`` on the fixed un-augmented subset (``bn_x``), not copied from
training. The ensembles of the first n members are evaluated by :func:`losslab.ensembles.growing`
(mean of predicted probabilities).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from .data import Dataset
from .flat import FlatModel
from .io import Point
from .seeds import derive_seed
from .train import Snapshots, continue_from, weights_job
from .training import CYCLE_SHAPES, EpochStats, cyclic_schedule, fingerprint, fit, make_optimizer, steps_per_epoch

FGE_KEYS = ("cycle_epochs", "n_members", "lr_max", "lr_min", "shape", "optimizer", "momentum", "l2", "batch_size")


@dataclass
class FgeSettings:
    """Settings of one FGE run (config section ``fge``); invalid values raise ``ValueError``
    naming the key."""

    cycle_epochs: int = 2
    n_members: int = 4
    lr_max: float = 0.05
    lr_min: float = 0.0005
    shape: str = "linear"  # linear | cosine
    optimizer: str = "sgd"
    momentum: float = 0.9
    l2: float = 0.0
    batch_size: int = 64

    def __post_init__(self):
        if self.shape not in CYCLE_SHAPES:
            raise ValueError(f"fge.shape = {self.shape!r} is not allowed; allowed values: {', '.join(CYCLE_SHAPES)}")
        if self.cycle_epochs < 1 or (self.shape == "linear" and self.cycle_epochs % 2):
            raise ValueError(f"fge.cycle_epochs = {self.cycle_epochs}: the linear (triangle) cycle needs an even number "
                             "of epochs, so that its minimum falls on an epoch boundary; the cosine cycle needs >= 1")
        if self.n_members < 1:
            raise ValueError(f"fge.n_members = {self.n_members} must be at least 1")
        if not 0 <= self.lr_min <= self.lr_max:
            raise ValueError(f"fge.lr_min = {self.lr_min} and fge.lr_max = {self.lr_max}: need 0 <= lr_min <= lr_max")
        if self.batch_size < 1:
            raise ValueError(f"fge.batch_size = {self.batch_size} must be at least 1")

    @classmethod
    def from_dict(cls, d: dict) -> "FgeSettings":
        return cls(**{k: d[k] for k in FGE_KEYS if k in d})

    @property
    def collect_epochs(self) -> list[int]:
        """The epochs (counted from the start of FGE) after which members are collected."""
        first = self.cycle_epochs // 2 if self.shape == "linear" else self.cycle_epochs
        return [first + i * self.cycle_epochs for i in range(self.n_members)]

    @property
    def epochs(self) -> int:
        """The training budget of the run in epochs: it ends at the last collection."""
        return self.collect_epochs[-1]


@dataclass
class FgeRun:
    """Members ``[M, D]`` (flat vectors, in order of collection), their BatchNorm-recomputed
    buffers, one history row per epoch, the status and the epoch resumed from."""

    members: torch.Tensor
    member_buffers: list[dict]
    status: str  # ok | diverged
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    resumed_from: int = 0


def train_fge(fm: FlatModel, start: Point, ds: Dataset, s: FgeSettings, seed: int, bn_x: torch.Tensor,
              device="cpu", state_path: str | os.PathLike | None = None, checkpoint_every: int = 0,
              stop_after: int | None = None, bn_batch: int | None = None) -> FgeRun:
    """Run FGE from the trained endpoint ``start`` (a Point of ``fm``'s architecture).

    Noise (data order, augmentation, dropout) comes from ``derive_seed(seed, "fge")``. The
    history has ``epoch``, ``running_loss``, the epoch's ``lr_first``, ``lr_last``, ``lr_min``,
    ``lr_max`` and ``members`` (collected so far). Members' BatchNorm buffers are recomputed on
    ``bn_x`` in minibatches of ``bn_batch`` (default :func:`losslab.flat.bn_batch`); a model
    without BatchNorm keeps its (empty) buffers. ``state_path`` / ``checkpoint_every`` /
    ``stop_after`` resume as in endpoint training. A diverged run returns the members collected
    before it diverged.
    """
    device = torch.device(device)
    model = continue_from(fm, start, device)
    opt = make_optimizer(model.parameters(), s.optimizer, s.lr_max, s.momentum, s.l2, key="fge.optimizer")
    ds = ds.to(device)
    n = ds.train_x.shape[0]
    lr_at = cyclic_schedule(s.lr_max, s.lr_min, s.cycle_epochs * steps_per_epoch(n, s.batch_size), s.shape)
    collect = set(s.collect_epochs)
    members = Snapshots()

    def record(epoch: int, stats: EpochStats, ok: bool) -> list[dict]:
        if ok and epoch in collect:
            vec = fm.flatten(model).clone()
            members.add(vec, fm.recompute_bn(vec, bn_x.to(device), bn_batch) if fm.has_bn else fm.buffers(model))
        return [{"epoch": epoch, "running_loss": stats.mean("loss"), "lr_first": stats.lr_first,
                 "lr_last": stats.lr_last, "lr_min": stats.lr_min, "lr_max": stats.lr_max,
                 "members": len(members)}] if epoch else []

    job = weights_job(model, ds, opt, lr_at, record, s.epochs, s.batch_size, name="fge",
                      extra_state=lambda: {"members": members.state()},
                      load_extra=lambda st: members.load_state(st["members"], device))
    key = fingerprint({"settings": asdict(s), "seed": seed, "start": float(start.flat.double().sum()),
                       "layout": fm.layout, "dataset": ds.name, "n": n})
    run = fit(job, key, derive_seed(seed, "fge"), state_path=state_path, checkpoint_every=checkpoint_every,
              stop_after=stop_after)
    return FgeRun(members.stacked(fm.numel, device), members.buffers, run.status, run.history, run.resumed_from)
