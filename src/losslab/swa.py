"""SWA against snapshot ensembles (Fort & Jastrzebski, section 4.5, Figure 6).

From a trained endpoint, training continues for ``epochs`` epochs with one learning rate and one
of two schedules, and a *snapshot* of the weights is taken every ``snapshot_every`` epochs:

- ``constant``: the learning rate stays at ``lr``;
- ``cyclic``: every cycle of ``snapshot_every`` epochs the learning rate falls from ``lr`` to
  ``lr * cycle_min_ratio`` along a cosine, step by step, and restarts (the snapshot-ensemble
  schedule of Huang et al., 2017); snapshots are taken at the low end of each cycle.

The snapshots are then compared on the fixed evaluation subsets:

- **SWA**: the mean of the snapshot weight vectors, accumulated with
  ``torch.optim.swa_utils.AveragedModel``; BatchNorm statistics are recomputed at the mean with
  ``swa_utils.update_bn`` on the fixed un-augmented subset;
- **ensemble**: the predicted class probabilities of the snapshots, averaged;
- every **individual snapshot**.

To show whether consecutive snapshots share one low-loss wedge, the loss is also evaluated along
the straight segment between each pair of consecutive snapshots and at the mean of all
snapshots. A high learning rate that moves the weights into another wedge between snapshots
shows up as a barrier on these segments and a high loss at the mean.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Callable

import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from .data import Dataset, EvalData
from .ensembles import ensemble_metrics
from .flat import FlatModel, bn_batch as default_bn_batch, metrics_from_outputs
from .io import Point
from .seeds import derive_seed
from .train import Snapshots, continue_from, weights_job
from .training import EpochStats, cyclic_schedule, fingerprint, fit, make_optimizer, steps_per_epoch

SCHEDULES = ("constant", "cyclic")


@dataclass
class SwaSettings:
    lr: float
    schedule: str = "constant"  # constant | cyclic
    epochs: int = 10
    snapshot_every: int = 2
    optimizer: str = "sgd"
    momentum: float = 0.9
    l2: float = 0.0
    batch_size: int = 64
    cycle_min_ratio: float = 0.01

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown SWA schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.snapshot_every < 1:
            raise ValueError(f"swa.snapshot_every must be at least 1, got {self.snapshot_every}")
        if self.epochs // self.snapshot_every < 2:
            raise ValueError(
                f"swa.epochs = {self.epochs} with swa.snapshot_every = {self.snapshot_every} gives fewer than "
                "2 snapshots; raise swa.epochs or lower swa.snapshot_every")

    @property
    def n_snapshots(self) -> int:
        return self.epochs // self.snapshot_every


def learning_rate(s: SwaSettings, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate at a global optimisation step: ``s.lr`` (constant), or a cosine from
    ``s.lr`` to ``s.lr * s.cycle_min_ratio`` within each cycle of ``s.snapshot_every`` epochs."""
    if s.schedule == "constant":
        return lambda step: s.lr
    return cyclic_schedule(s.lr, s.lr * s.cycle_min_ratio, s.snapshot_every * steps_per_epoch, "cosine")


@dataclass
class SwaRun:
    snapshots: torch.Tensor  # [S, D] snapshot weight vectors
    snapshot_buffers: list[dict]
    swa: torch.Tensor  # [D] AveragedModel's parameters
    swa_buffers: dict
    status: str  # ok | diverged
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    resumed_from: int = 0


def continue_training(fm: FlatModel, start: Point, ds: Dataset, s: SwaSettings, seed: int, bn_x: torch.Tensor,
                      device="cpu", state_path: str | os.PathLike | None = None, checkpoint_every: int = 0,
                      stop_after: int | None = None, bn_batch: int | None = None) -> SwaRun:
    """Train on from ``start``; snapshot every ``snapshot_every`` epochs; average with SWA.

    A use of the training scaffold (:func:`losslab.training.fit`): noise from
    ``derive_seed(seed, "swa")``, L2 as ``weight_decay``, resumable from ``state_path`` (the
    weights, the snapshots so far and the running average are part of the state). BatchNorm
    statistics of the average are recomputed with ``update_bn`` on ``bn_x`` in minibatches of
    ``bn_batch`` (default :func:`losslab.flat.bn_batch`). Returns the snapshots, the average,
    the per-epoch history and the status.
    """
    device = torch.device(device)
    model = continue_from(fm, start, device)
    opt = make_optimizer(model.parameters(), s.optimizer, s.lr, s.momentum, s.l2, key="swa.optimizer")
    swa_model = AveragedModel(model)
    ds = ds.to(device)
    snaps = Snapshots()

    def record(epoch: int, stats: EpochStats, ok: bool) -> list[dict]:
        if ok and epoch and epoch % s.snapshot_every == 0:
            snaps.add(fm.flatten(model).clone(), fm.buffers(model))
            swa_model.update_parameters(model)
        return [{"epoch": epoch, "running_loss": stats.mean("loss"), "lr_last": stats.lr_last,
                 "snapshots": len(snaps)}] if epoch else []

    def load_extra(st: dict) -> None:
        swa_model.load_state_dict(st["swa"])
        snaps.load_state(st["snapshots"], device)

    lr_at = learning_rate(s, steps_per_epoch(ds.train_x.shape[0], s.batch_size))
    job = weights_job(model, ds, opt, lr_at, record, s.epochs, s.batch_size, name="swa", load_extra=load_extra,
                      extra_state=lambda: {"swa": swa_model.state_dict(), "snapshots": snaps.state()})
    key = fingerprint({"settings": asdict(s), "seed": seed, "start": float(start.flat.double().sum()),
                       "layout": fm.layout, "dataset": ds.name, "n": ds.train_x.shape[0]})
    run = fit(job, key, derive_seed(seed, "swa"), state_path=state_path, checkpoint_every=checkpoint_every,
              stop_after=stop_after)
    if run.status == "ok" and fm.has_bn:
        update_bn(list(bn_x.to(device).split(bn_batch or default_bn_batch())), swa_model)
    return SwaRun(snaps.stacked(fm.numel, device), snaps.buffers, fm.flatten(swa_model.module),
                  fm.buffers(swa_model.module), run.status, run.history, run.resumed_from)


def _outputs(fm: FlatModel, vec: torch.Tensor, x: torch.Tensor, bn_x: torch.Tensor, buffers: dict | None = None):
    if fm.has_bn and buffers is None:
        buffers = fm.recompute_bn(vec, bn_x)
    return fm.outputs(vec, x, buffers or None)


def evaluate_run(fm: FlatModel, run: SwaRun, ev: EvalData, task: str, line_points: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables of one run: ``points`` (kind snapshot|swa|ensemble, per split) and ``lines``
    (loss along consecutive-snapshot segments, kind line, and at the snapshots' mean, kind mean)."""
    if run.status != "ok" or run.snapshots.shape[0] == 0:
        nan = math.nan
        pts = pd.DataFrame([{"kind": k, "index": -1, "split": sp, "loss": nan, "accuracy": nan}
                            for k in ("swa", "ensemble", "snapshot") for sp in ("train", "test")])
        lines = pd.DataFrame([{"kind": "mean", "pair": -1, "t": nan, "split": "train", "loss": nan, "accuracy": nan}])
        return pts, lines
    rows, line_rows = [], []
    for split in ("train", "test"):
        x, y = ev.split(split)
        outs = []
        for i, v in enumerate(run.snapshots):
            o = _outputs(fm, v, x, ev.bn_x)
            outs.append(o)
            rows.append({"kind": "snapshot", "index": i, "split": split, **metrics_from_outputs(o, y, task)})
        rows.append({"kind": "ensemble", "index": -1, "split": split, **ensemble_metrics(outs, y, task)})
        swa_out = _outputs(fm, run.swa, x, ev.bn_x, run.swa_buffers if fm.has_bn else None)
        rows.append({"kind": "swa", "index": -1, "split": split, **metrics_from_outputs(swa_out, y, task)})
        ts = torch.linspace(0, 1, line_points)
        for i in range(run.snapshots.shape[0] - 1):
            a, b = run.snapshots[i], run.snapshots[i + 1]
            for t in ts.tolist():
                o = _outputs(fm, (1 - t) * a + t * b, x, ev.bn_x)
                line_rows.append({"kind": "line", "pair": i, "t": t, "split": split, **metrics_from_outputs(o, y, task)})
        mean = run.snapshots.mean(0)
        line_rows.append({"kind": "mean", "pair": -1, "t": math.nan, "split": split,
                          **metrics_from_outputs(_outputs(fm, mean, x, ev.bn_x), y, task)})
    return pd.DataFrame(rows), pd.DataFrame(line_rows)


def summarise(points: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """One row per split of ONE run: SWA, ensemble, best and mean single snapshot, barriers.

    The best snapshot is the one with the highest accuracy on that split (lowest loss for
    regression). ``barrier`` is the largest rise of the loss along a consecutive-snapshot
    segment above the higher of its two ends; ``mean_loss`` is the loss at the snapshots' mean.
    """
    out = []
    for split in ("train", "test"):
        g = points[points["split"] == split]
        rec = {"split": split}
        for kind in ("swa", "ensemble"):
            r = g[g["kind"] == kind]
            rec[f"{kind}_loss"] = float(r["loss"].iloc[0]) if len(r) else math.nan
            rec[f"{kind}_accuracy"] = float(r["accuracy"].iloc[0]) if len(r) else math.nan
        snaps = g[(g["kind"] == "snapshot") & g["loss"].notna()]
        if len(snaps):
            order = (["accuracy", "loss"], [False, True]) if snaps["accuracy"].notna().any() else (["loss"], [True])
            best = snaps.sort_values(order[0], ascending=order[1]).iloc[0]
            rec.update(best_loss=float(best["loss"]), best_accuracy=float(best["accuracy"]),
                       snapshot_mean_loss=float(snaps["loss"].mean()),
                       snapshot_mean_accuracy=float(snaps["accuracy"].mean()), n_snapshots=int(len(snaps)))
        else:
            rec.update(best_loss=math.nan, best_accuracy=math.nan, snapshot_mean_loss=math.nan,
                       snapshot_mean_accuracy=math.nan, n_snapshots=0)
        lk = lines[lines["split"] == split]
        barriers = []
        for _, seg in lk[lk["kind"] == "line"].groupby("pair"):
            seg = seg.sort_values("t")
            barriers.append(float(seg["loss"].max() - max(seg["loss"].iloc[0], seg["loss"].iloc[-1])))
        rec["barrier"] = max(barriers) if barriers else math.nan
        m = lk[lk["kind"] == "mean"]
        rec["mean_loss"] = float(m["loss"].iloc[0]) if len(m) else math.nan
        out.append(rec)
    return pd.DataFrame(out)
