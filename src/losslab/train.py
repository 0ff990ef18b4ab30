"""Endpoint training: one network from one seed with one hyper-parameter setting.

A use of the training scaffold (:mod:`losslab.training`): deterministic for a given seed on the
CPU, resumable from its state every N epochs, ``diverged`` recorded instead of raised. The
network is initialised from ``torch.manual_seed(seed)``; its noise (data order, augmentation,
dropout) comes from ``data_seed``, by default ``derive_seed(seed, "data-order")``.

Spawning (Frankle et al.'s instability analysis): ``save_states_at={k: path}`` writes the full
state after epoch ``k``; ``train_endpoint(..., spawn_from=path, copy=c)`` continues that state to
the end of the same schedule with the noise seed ``derive_seed(seed, "spawn", c)``. Copies share
the initialisation and the first ``k`` epochs exactly; a copy spawned at ``k = 0`` is the run
trained from scratch with ``data_seed=derive_seed(seed, "spawn", c)``.

:func:`weights_job` and :func:`continue_from` are the pieces that SWA and FGE share with
endpoints: training a network's own weights on a dataset.
"""
from __future__ import annotations

import copy as copy_module
import math
import os
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import pandas as pd
import torch

from .data import Dataset, EvalData, augment_batch
from .flat import FlatModel, evaluate, loss_fn
from .io import Point
from .models import build_model, spec_json
from .seeds import derive_seed
from .training import (EpochStats, Job, Spawn, epoch_schedule, fingerprint, fit, make_optimizer, read_state,
                       steps_per_epoch)

TRAIN_KEYS = ("optimizer", "lr", "momentum", "schedule", "batch_size", "epochs", "l2")
MODEL_KEYS = ("width", "dropout")


@dataclass
class TrainSettings:
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    schedule: str = "constant"  # constant | cosine | step
    batch_size: int = 64
    epochs: int = 20
    l2: float = 0.0  # 0.5 * l2 * ||w||^2 in the objective: weight_decay = l2 (losslab.training)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainSettings":
        return cls(**{k: d[k] for k in TRAIN_KEYS if k in d})


@dataclass
class TrainResult:
    point: Point
    history: pd.DataFrame
    status: str  # "ok" or "diverged"
    resumed_from: int = 0
    spawned_at: int | None = None


def weights_job(model: torch.nn.Module, ds: Dataset, optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float],
                record: Callable[[int, EpochStats, bool], list[dict]], epochs: int, batch_size: int, *,
                extra_state: Callable[[], dict] | None = None, load_extra: Callable[[dict], None] | None = None,
                name: str = "") -> Job:
    """A :class:`losslab.training.Job` that trains ``model``'s own parameters on ``ds`` (on the
    model's device): shuffled minibatches, the dataset's augmentation drawn from the job's
    generator, the task's loss, train mode. Its state is the model's ``state_dict`` (weights and
    buffers) plus ``extra_state()``, which ``load_extra`` puts back."""
    lossf = loss_fn(ds.task)
    generator = torch.Generator()

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        model.train()
        return {"loss": lossf(model(augment_batch(ds.train_x[idx], ds.augment, generator)), ds.train_y[idx])}

    def state() -> dict:
        return {"model": model.state_dict(), **(extra_state() if extra_state else {})}

    def load_state(st: dict) -> None:
        model.load_state_dict(st["model"])
        if load_extra:
            load_extra(st)

    return Job(optimizer, lr_at, step, record, list(model.parameters()), epochs, generator, ds.train_x.shape[0],
               batch_size, state, load_state, name)


class Snapshots:
    """Flat vectors and their buffers taken from a network during training (SWA snapshots, FGE
    members), in order; their :meth:`state` is part of a run's resumable state."""

    def __init__(self) -> None:
        self.vectors: list[torch.Tensor] = []
        self.buffers: list[dict[str, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, vector: torch.Tensor, buffers: dict[str, torch.Tensor]) -> None:
        self.vectors.append(vector)
        self.buffers.append(buffers)

    def stacked(self, numel: int, device) -> torch.Tensor:
        """The vectors as ``[S, numel]`` (``[0, numel]`` when there are none)."""
        return torch.stack(self.vectors) if self.vectors else torch.empty(0, numel, device=device)

    def state(self) -> dict:
        return {"vectors": list(self.vectors), "buffers": list(self.buffers)}

    def load_state(self, st: dict, device) -> None:
        self.vectors = [v.to(device) for v in st["vectors"]]
        self.buffers = [{k: v.to(device) for k, v in b.items()} for b in st["buffers"]]


def continue_from(fm: FlatModel, start: Point, device) -> torch.nn.Module:
    """A copy of ``fm.module`` on ``device`` holding the weights and buffers of ``start``."""
    model = copy_module.deepcopy(fm.module).to(device)
    return fm.load_into(start.flat.to(device), model, {k: v.to(device) for k, v in start.buffers.items()})


def train_endpoint(
    model_spec: dict,
    settings: TrainSettings,
    ds: Dataset,
    ev: EvalData,
    seed: int,
    device: torch.device | str = "cpu",
    state_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    stop_after: int | None = None,
    save_states_at: Mapping[int, str | os.PathLike] | None = None,
    spawn_from: str | os.PathLike | None = None,
    copy: int = 0,
    data_seed: int | None = None,
) -> TrainResult:
    """Train one endpoint; returns its Point, one history row per (epoch, split) and the status.

    ``state_path`` holds the resumable state, written every ``checkpoint_every`` epochs;
    ``stop_after`` ends the run after that many epochs in this call (to test resumption);
    ``save_states_at`` maps epochs to paths of full saved states to spawn from. ``spawn_from``
    (such a path, saved by a run with the same model, settings, seed and data) starts copy
    ``copy`` there. ``data_seed`` overrides the noise seed (default ``derive_seed(seed,
    "data-order")``, or ``derive_seed(seed, "spawn", copy)`` for a spawned copy). Raises
    :class:`losslab.io.ArtifactError` for a missing or unreadable spawn state and ``ValueError``
    for one of other settings, before training.
    """
    device = torch.device(device)
    ds = ds.to(device)
    torch.manual_seed(seed)
    model = build_model(model_spec, ds.in_shape, ds.num_outputs).to(device)
    fm = FlatModel(model)
    opt = make_optimizer(model.parameters(), settings.optimizer, settings.lr, settings.momentum, settings.l2,
                         key="train.optimizer")
    n = ds.train_x.shape[0]
    lr_at = epoch_schedule(settings.schedule, settings.lr, settings.epochs, steps_per_epoch(n, settings.batch_size),
                           key="train.schedule")
    lineage = fingerprint({"spec": model_spec, "settings": asdict(settings), "seed": seed, "dataset": ds.name, "n": n})
    spawn = None
    if spawn_from is not None:
        state = read_state(spawn_from)
        spawn = Spawn(state, derive_seed(seed, "spawn", copy) if data_seed is None else data_seed)
    noise = spawn.data_seed if spawn else derive_seed(seed, "data-order") if data_seed is None else data_seed
    key = fingerprint({"lineage": lineage, "data_seed": noise,
                       "parent": [spawn.state["key"], spawn.state["epoch"]] if spawn else None})

    def record(epoch: int, stats: EpochStats, ok: bool) -> list[dict]:
        common = {"running_loss": stats.mean("loss"), "lr": stats.lr_last}
        if not ok:
            return [{"epoch": epoch, "split": "train", "loss": math.nan, "accuracy": math.nan, **common}]
        vec, bufs = fm.flatten(), fm.buffers()
        return [{"epoch": epoch, "split": split, **evaluate(fm, vec, *(t.to(device) for t in ev.split(split)), ds.task,
                                                            bufs), **common}
                for split in ("train", "test")]

    job = weights_job(model, ds, opt, lr_at, record, settings.epochs, settings.batch_size, name="")
    run = fit(job, key, noise, lineage=lineage, state_path=state_path, checkpoint_every=checkpoint_every,
              save_states_at=save_states_at, spawn=spawn, stop_after=stop_after)
    meta = {"spawned_at": run.spawned_at, "copy": int(copy)} if spawn else {}
    point = fm.point(model_spec=spec_json(model_spec), status=run.status, seed=seed, dataset=ds.name, **meta)
    return TrainResult(point, run.history, run.status, run.resumed_from, run.spawned_at)
