"""Endpoint training: one network from one seed with one hyper-parameter setting.

The run is deterministic on the CPU for a given seed, checkpoints its full state every N
epochs (weights, optimiser, scheduler, RNG and history) so a killed job resumes where it
stopped, and records ``diverged`` instead of crashing when the loss stops being finite.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from .data import Dataset, EvalData, augment_batch
from .flat import FlatModel, evaluate, loss_fn
from .io import Point, load_tensors, save_tensors
from .models import build_model, spec_json

log = logging.getLogger("losslab")

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
    l2: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainSettings":
        return cls(**{k: d[k] for k in TRAIN_KEYS if k in d})


def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.l2)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.l2)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; allowed: adam, sgd")


def make_scheduler(opt, s: TrainSettings, steps_per_epoch: int = 1):
    """A per-epoch learning-rate schedule."""
    if s.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    if s.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, s.epochs))
    if s.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, [int(s.epochs * 0.5), int(s.epochs * 0.75)], 0.1)
    raise ValueError(f"unknown schedule {s.schedule!r}; allowed: constant, cosine, step")


@dataclass
class TrainResult:
    point: Point
    history: pd.DataFrame
    status: str  # "ok" or "diverged"
    resumed_from: int = 0


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["gen"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_epoch(model, opt, ds: Dataset, bs: int, gen: torch.Generator, lossf) -> float:
    """One pass over the training set in shuffled minibatches; returns the mean loss."""
    model.train()
    n = ds.train_x.shape[0]
    perm = torch.randperm(n, generator=gen).to(ds.train_x.device)
    total = torch.zeros((), device=ds.train_x.device)
    for i in range(0, n, bs):
        idx = perm[i : i + bs]
        xb = augment_batch(ds.train_x[idx], ds.augment, gen)
        loss = lossf(model(xb), ds.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * idx.numel()
    return (total / n).item()


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
) -> TrainResult:
    """Train one endpoint. ``state_path`` holds the resumable state; ``stop_after`` ends the
    run early after that many epochs in this call (used to test resumption)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(model_spec, ds.in_shape, ds.num_outputs).to(device)
    fm = FlatModel(model)
    opt = make_optimizer(model.parameters(), settings)
    sched = make_scheduler(opt, settings)
    gen = torch.Generator().manual_seed(seed + 7919)
    lossf = loss_fn(ds.task)
    ds = ds.to(device)
    key = fingerprint({"spec": model_spec, "settings": settings.__dict__, "seed": seed, "dataset": ds.name, "n": ds.train_x.shape[0]})

    rows: list[dict] = []
    start = 0
    status = "ok"
    if state_path and Path(state_path).exists():
        try:
            st = load_tensors(state_path, map_location=device)
        except Exception as exc:  # a damaged resume file is not fatal: start over
            log.warning("ignoring unreadable resume state %s: %s", state_path, exc)
            st = None
        if st is not None and st.get("key") == key:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            _set_rng_state(st["rng"], gen)
            rows = [dict(zip(st["history_cols"], r)) for r in zip(*st["history"].values())] if st["history"] else []
            start = int(st["epoch"])
            log.info("resumed from %s at epoch %d", state_path, start)
        elif st is not None:
            log.info("resume state %s belongs to other settings; starting over", state_path)

    def save_state(epoch: int) -> None:
        cols = list(rows[0].keys()) if rows else []
        save_tensors(
            {
                "key": key,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": _rng_state(gen),
                "history_cols": cols,
                "history": {c: [r[c] for r in rows] for c in cols},
            },
            state_path,
        )

    def record(epoch: int, running: float) -> None:
        vec = fm.flatten()
        bufs = fm.buffers()
        for split in ("train", "test"):
            x, y = ev.split(split)
            m = evaluate(fm, vec, x.to(device), y.to(device), ds.task, bufs)
            rows.append({"epoch": epoch, "split": split, "loss": m["loss"], "accuracy": m["accuracy"],
                         "running_loss": running, "lr": opt.param_groups[0]["lr"]})

    if start == 0 and not rows:
        record(0, math.nan)
    bar = tqdm(range(start, settings.epochs), desc=f"seed {seed}", initial=start, total=settings.epochs,
               mininterval=2.0, dynamic_ncols=False, ascii=True)
    done_here = 0
    for epoch in bar:
        running = run_epoch(model, opt, ds, settings.batch_size, gen, lossf)
        sched.step()
        finite = math.isfinite(running) and bool(torch.isfinite(fm.flatten()).all())
        if not finite:
            status = "diverged"
            log.warning("epoch %d: loss %s is not finite; recording the run as diverged", epoch + 1, running)
            rows.append({"epoch": epoch + 1, "split": "train", "loss": math.nan, "accuracy": math.nan,
                         "running_loss": running, "lr": opt.param_groups[0]["lr"]})
            break
        record(epoch + 1, running)
        last = rows[-1]
        log.info("epoch %d/%d running_loss %.4f test_loss %.4f test_acc %.4f", epoch + 1, settings.epochs,
                 running, last["loss"], last["accuracy"])
        done_here += 1
        if state_path and checkpoint_every and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < settings.epochs:
            save_state(epoch + 1)
        if stop_after is not None and done_here >= stop_after:
            break
    bar.close()

    hist = pd.DataFrame(rows)
    hist["status"] = status
    point = fm.point(model_spec=spec_json(model_spec), status=status, seed=seed, dataset=ds.name)
    return TrainResult(point, hist, status, start)
