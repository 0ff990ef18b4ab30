"""One training scaffold for every loop of losslab.

Endpoint training (:mod:`losslab.train`), curve training (:mod:`losslab.curves`), SWA and
snapshot runs (:mod:`losslab.swa`), Fast Geometric Ensembling (:mod:`losslab.fge`) and the
optimisation of a connector node (:func:`losslab.connectors.optimise_in_subspace`) are uses of
:func:`fit`. A use describes its run as a :class:`Job`: an optimiser over the tensors it trains,
the learning rate at each step, a function that turns one minibatch into a loss, and what to
record after each epoch. :func:`fit` owns everything else:

* **the epoch loop**: each epoch shuffles the training samples with the job's generator and walks
  them in minibatches (a job without data takes one step per epoch); before every step the
  learning rate is set from ``job.lr_at(step)``, then zero_grad, backward, step;
* **the divergence check**: after each epoch, a non-finite running loss or a non-finite trained
  tensor ends the run with status ``diverged``. The epoch is recorded (the use decides what a
  diverged row holds); nothing is raised;
* **every random stream**: a fresh run seeds the job's generator (data order, augmentation,
  sampled ``t`` of a curve) with ``data_seed`` and torch's global generator (dropout) with
  ``derive_seed(data_seed, "torch")``; resumable state holds both, and CUDA's when present;
* **resumable state**, saved every ``checkpoint_every`` epochs with
  :func:`losslab.io.save_tensors` (atomic): the use's tensors (``job.state()``: weights or the
  trained tensors, snapshots, collected members), the optimiser, the RNG streams, the history
  rows and the epoch, under a :func:`fingerprint` of the settings. A run given an existing state
  with the same fingerprint continues where it stopped, bit for bit; a different fingerprint or an
  unreadable file starts over. The learning rate is a pure function of the global step, so the
  schedule needs no state of its own;
* **spawning** (Frankle et al.'s instability): ``save_states_at={k: path}`` writes the full state
  after epoch ``k``; a :class:`Spawn` starts another run from such a state with new noise streams
  and trains to the end of the same schedule;
* **progress and logging**: a tqdm bar only when stderr is a terminal (never in a job's log
  file), and one plain ``losslab`` log line per epoch.

L2 convention (the one rule of every use)
-----------------------------------------
A setting ``l2`` adds ``0.5 * l2 * ||w||^2`` to the training objective, where ``w`` is the flat
vector of *all* parameters of the network at which the data loss is evaluated (weights, biases,
BatchNorm scales). When the trained tensors are the network's own parameters (endpoints, SWA,
FGE, spawned copies) the penalty's gradient ``l2 * w`` is added by the optimiser:
``weight_decay = l2`` in ``torch.optim.SGD`` and ``torch.optim.Adam`` (coupled L2, not AdamW's
decoupled decay), exactly the gradient of the penalty. When the network's weights are a function
of the trained tensors (a curve: ``w = phi(t)`` of its bends) the use adds :func:`l2_penalty` of
``phi(t)`` to each minibatch loss and the optimiser has no weight decay
(``make_optimizer(..., l2_in_loss=True)``). A connector node optimises a given loss and has no L2.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .io import ArtifactError, load_tensors, save_tensors
from .seeds import derive_seed

log = logging.getLogger("losslab")

STATE_FORMAT = "losslab.train-state/1"
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "step")
CYCLE_SHAPES = ("linear", "cosine")


def fingerprint(obj) -> str:
    """16 hex digits of the SHA-256 of ``obj`` as sorted JSON (non-JSON values by ``str``): the
    identity of a run's settings in its resumable state."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- optimiser, L2 and learning rates -----------------------------------------------------
def make_optimizer(params, name: str, lr: float, momentum: float = 0.9, l2: float = 0.0, *,
                   l2_in_loss: bool = False, key: str = "optimizer") -> torch.optim.Optimizer:
    """``torch.optim.Adam`` or ``torch.optim.SGD`` (with ``momentum``) over ``params``.

    L2 follows the module's convention: ``weight_decay = l2`` when ``params`` are the network's
    own weights, none when ``l2_in_loss`` (the use adds :func:`l2_penalty` to its loss). Raises
    ``ValueError`` naming ``key`` and the allowed values for an unknown optimiser.
    """
    decay = 0.0 if l2_in_loss else l2
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay)
    raise ValueError(f"{key} = {name!r} is not allowed; allowed values: {', '.join(OPTIMIZERS)}")


def l2_penalty(w: torch.Tensor, l2: float) -> torch.Tensor:
    """``0.5 * l2 * ||w||^2``: the L2 term of the training objective at network weights ``w``."""
    return 0.5 * l2 * w.pow(2).sum()


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Minibatches in one pass over ``n_samples`` (the last one may be smaller)."""
    return math.ceil(n_samples / batch_size)


def epoch_schedule(name: str, lr: float, epochs: int, steps_per_epoch: int = 1,
                   key: str = "schedule") -> Callable[[int], float]:
    """The learning rate at a global step for a schedule constant within each epoch.

    With ``e = step // steps_per_epoch``: ``constant`` gives ``lr``; ``cosine`` gives
    ``lr * (1 + cos(pi * e / epochs)) / 2`` (annealed towards 0); ``step`` gives ``lr``, then
    ``0.1 * lr`` from epoch ``int(0.5 * epochs)`` and ``0.01 * lr`` from ``int(0.75 * epochs)``.
    With ``steps_per_epoch = 1`` a step is an "epoch" (used by connector nodes). Raises
    ``ValueError`` naming ``key`` for an unknown schedule.
    """
    if name == "constant":
        return lambda step: lr
    if name == "cosine":
        return lambda step: 0.5 * lr * (1.0 + math.cos(math.pi * (step // steps_per_epoch) / max(1, epochs)))
    if name == "step":
        milestones = (int(epochs * 0.5), int(epochs * 0.75))
        return lambda step: lr * 0.1 ** sum(step // steps_per_epoch >= m for m in milestones)
    raise ValueError(f"{key} = {name!r} is not allowed; allowed values: {', '.join(SCHEDULES)}")


def cyclic_schedule(lr_max: float, lr_min: float, cycle_steps: int, shape: str,
                    key: str = "shape") -> Callable[[int], float]:
    """The learning rate at a global step of a schedule that repeats every ``cycle_steps`` steps.

    ``linear`` is the triangle of Garipov et al.'s Fast Geometric Ensembling: with
    ``u = (step mod C + 1) / C`` in ``(0, 1]`` the rate falls linearly from ``lr_max`` to
    ``lr_min`` at ``u = 1/2`` (step ``C/2 - 1`` of each cycle, for even ``C``) and rises back to
    ``lr_max`` at ``u = 1`` (the cycle's last step). ``cosine`` starts each cycle at ``lr_max``
    and falls along a half cosine to ``lr_min`` at the cycle's last step, then restarts (the
    snapshot-ensemble schedule of Huang et al.). Raises ``ValueError`` naming ``key`` for an
    unknown shape.
    """
    span = lr_max - lr_min
    if shape == "linear":
        def linear(step: int) -> float:
            u = (step % cycle_steps + 1) / cycle_steps
            return lr_max - 2 * u * span if u <= 0.5 else lr_min + (2 * u - 1) * span
        return linear
    if shape == "cosine":
        return lambda step: lr_min + 0.5 * span * (1.0 + math.cos(math.pi * (step % cycle_steps) / max(1, cycle_steps - 1)))
    raise ValueError(f"{key} = {shape!r} is not allowed; allowed values: {', '.join(CYCLE_SHAPES)}")


# ---- the job a use describes -------------------------------------------------------------
@dataclass
class EpochStats:
    """What one epoch did: the sample-weighted means of the step outputs (``running``) and the
    learning rates of its steps. Before the first epoch ``running`` is empty and every rate is
    the first step's."""

    running: dict[str, float]
    lr_first: float
    lr_last: float
    lr_min: float
    lr_max: float

    def mean(self, name: str) -> float:
        """The running mean of step output ``name`` (NaN before the first epoch)."""
        return self.running.get(name, math.nan)


@dataclass
class Job:
    """One training run as :func:`fit` drives it.

    ``step(idx)`` gets the device indices of one minibatch (``None`` when ``n_samples`` is None:
    one step per epoch without data) and returns scalar tensors: ``"objective"`` (the data loss
    plus penalties) is minimised when present, else ``"loss"`` (the data loss); every entry's mean
    over the epoch reaches ``record``. ``record(epoch, stats, ok)`` is called at
    epoch 0 of a fresh run and after every epoch, ``ok`` False for the epoch that diverged; it
    returns the history rows of that epoch (plain Python values) and may keep snapshots of its
    own. ``trained`` are the tensors checked for finiteness. ``state()`` returns everything of
    the use that a resumed run needs (tensors and plain values), ``load_state`` puts it back;
    a job without them cannot be checkpointed. ``name`` labels log lines and the progress bar.
    """

    optimizer: torch.optim.Optimizer
    lr_at: Callable[[int], float]
    step: Callable[[torch.Tensor | None], dict[str, torch.Tensor]]
    record: Callable[[int, EpochStats, bool], list[dict]]
    trained: Sequence[torch.Tensor]
    epochs: int
    generator: torch.Generator
    n_samples: int | None = None
    batch_size: int = 1
    state: Callable[[], dict] | None = None
    load_state: Callable[[dict], None] | None = None
    name: str = ""
    log_epochs: bool = True
    progress: bool = True


@dataclass
class Spawn:
    """Start from another run's saved state (from ``save_states_at``) with the noise streams
    seeded from ``data_seed`` instead of the saved ones."""

    state: dict
    data_seed: int


@dataclass
class Fit:
    """The outcome of :func:`fit`: every recorded row (with a ``status`` column), the status
    (``ok`` or ``diverged``), the epoch restored from ``state_path`` (0 for a fresh or spawned
    start) and the epoch a spawned run started from (``None`` otherwise)."""

    history: pd.DataFrame
    status: str
    resumed_from: int = 0
    spawned_at: int | None = None


def read_state(path: str | os.PathLike) -> dict:
    """A saved training state (a resume file or one of ``save_states_at``), loaded on the CPU.

    Raises :class:`losslab.io.ArtifactError` naming the file when it is missing, unreadable or
    not a losslab training state."""
    st = load_tensors(path)
    if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
        raise ArtifactError(f"{path} is not a losslab training state ({STATE_FORMAT})")
    return st


def fit(job: Job, key: str = "", data_seed: int | None = None, *, lineage: str | None = None,
        state_path: str | os.PathLike | None = None, checkpoint_every: int = 0,
        save_states_at: Mapping[int, str | os.PathLike] | None = None, spawn: Spawn | None = None,
        stop_after: int | None = None) -> Fit:
    """Run ``job`` to ``job.epochs`` epochs (or ``stop_after`` epochs in this call) and return a :class:`Fit`.

    Start: a readable state at ``state_path`` with fingerprint ``key`` is resumed; else a
    ``spawn`` is restored (its ``lineage``, the fingerprint shared by runs that may spawn from one
    another, must equal ``lineage``) and its noise streams seeded from ``spawn.data_seed``; else
    the run starts fresh, seeds its streams from ``data_seed`` (left alone when ``None``) and
    records epoch 0. Saves: the state after epoch ``k`` for each ``k`` of ``save_states_at``
    (0 included), and to ``state_path`` every ``checkpoint_every`` epochs before the last.
    Raises ``ValueError`` before any work for an epoch of ``save_states_at`` outside
    ``0..job.epochs``, a checkpoint request for a job without ``state``, or a spawn of another
    lineage.
    """
    save_states_at = {int(k): v for k, v in (save_states_at or {}).items()}
    bad = sorted(k for k in save_states_at if not 0 <= k <= job.epochs)
    if bad:
        raise ValueError(f"save_states_at: epochs {bad} are outside 0..{job.epochs} (the run's epochs)")
    if (save_states_at or (state_path and checkpoint_every)) and job.state is None:
        raise ValueError("this job has no resumable state: it cannot be checkpointed")
    if spawn is not None and spawn.state.get("lineage") != lineage:
        raise ValueError("the spawn state was saved by a run with other settings (model, training, seed or data); "
                         "a copy must be spawned from its own run")
    rows: list[dict] = []

    def save(path, epoch: int) -> None:
        save_tensors({"format": STATE_FORMAT, "key": key, "lineage": lineage, "epoch": epoch, "state": job.state(),
                      "optimizer": job.optimizer.state_dict(), "rng": _rng_state(job.generator), "history": rows},
                     path)

    def restore(st: dict) -> int:
        job.load_state(st["state"])
        job.optimizer.load_state_dict(st["optimizer"])
        _set_rng_state(st["rng"], job.generator)
        rows.extend(st["history"])
        return int(st["epoch"])

    own = _resumable(state_path, key)
    resumed_from, spawned_at = 0, None
    if own is not None:
        start = resumed_from = restore(own)
        log.info(" ".join(filter(None, ("resumed", job.name, f"from {state_path} at epoch {start}"))))
    elif spawn is not None:
        start = spawned_at = restore(spawn.state)
        _seed_streams(job.generator, spawn.data_seed)
        log.info(" ".join(filter(None, ("spawned", job.name, f"from epoch {start} with data seed {spawn.data_seed}"))))
    else:
        start = 0
        if data_seed is not None:
            _seed_streams(job.generator, data_seed)
        lr0 = job.lr_at(0)
        rows.extend(job.record(0, EpochStats({}, lr0, lr0, lr0, lr0), True))
        if 0 in save_states_at:
            save(save_states_at[0], 0)

    status = "ok"
    per_epoch = 1 if job.n_samples is None else steps_per_epoch(job.n_samples, job.batch_size)
    show = job.progress and getattr(sys.stderr, "isatty", lambda: False)()
    with logging_redirect_tqdm([log]) if show else contextlib.nullcontext():
        bar = tqdm(range(start, job.epochs), desc=job.name or "training", initial=start, total=job.epochs,
                   mininterval=2.0, ascii=True, disable=not show)
        for epoch in bar:
            done = epoch + 1
            stats = _epoch(job, first_step=epoch * per_epoch)
            ok = math.isfinite(stats.mean("loss")) and bool(torch.stack([torch.isfinite(t).all() for t in job.trained]).all())
            new = job.record(done, stats, ok)
            rows.extend(new)
            if not ok:
                status = "diverged"
                log.warning(" ".join(filter(None, (job.name, f"epoch {done}: loss {stats.mean('loss')} or the weights "
                                                   "are not finite; recording the run as diverged"))))
                break
            if job.log_epochs:
                log.info(" ".join(filter(None, (job.name, f"epoch {done}/{job.epochs}:", _describe(new)))))
            if done in save_states_at:
                save(save_states_at[done], done)
            if state_path and checkpoint_every and done % checkpoint_every == 0 and done < job.epochs:
                save(state_path, done)
            if stop_after is not None and done - start >= stop_after:
                break
        bar.close()
    return Fit(pd.DataFrame(rows).assign(status=status), status, resumed_from, spawned_at)


# ---- helpers of fit -------------------------------------------------------------------------
def _epoch(job: Job, first_step: int) -> EpochStats:
    """One pass of ``job`` over its data in shuffled minibatches (one step without data), the
    learning rate set from the global step before each step; returns its :class:`EpochStats`.
    Step outputs are summed on the device (one host sync per output and epoch)."""
    n = job.n_samples
    totals: dict[str, torch.Tensor] = {}
    lrs: list[float] = []
    device = job.trained[0].device
    batches = [None] if n is None else torch.randperm(n, generator=job.generator).to(device).split(job.batch_size)
    for step, idx in enumerate(batches, start=first_step):
        lrs.append(job.lr_at(step))
        for group in job.optimizer.param_groups:
            group["lr"] = lrs[-1]
        out = job.step(idx)
        job.optimizer.zero_grad(set_to_none=True)
        out.get("objective", out["loss"]).backward()
        job.optimizer.step()
        weight = 1 if idx is None else idx.numel()
        for name, value in out.items():
            totals[name] = totals.get(name, 0) + value.detach() * weight
    running = {name: (total / (n or 1)).item() for name, total in totals.items()}
    return EpochStats(running, lrs[0], lrs[-1], min(lrs), max(lrs))


def _resumable(path, key: str) -> dict | None:
    """The state at ``path`` if it exists, loads, and belongs to the run ``key``; else None
    (an unreadable file is logged as a warning and ignored: the run starts over)."""
    if not path or not os.path.exists(path):
        return None
    try:
        st = read_state(path)
    except ArtifactError as exc:
        log.warning("ignoring unreadable resume state %s: %s", path, exc)
        return None
    if st.get("key") != key:
        log.info("resume state %s belongs to other settings; starting over", path)
        return None
    return st


def _seed_streams(generator: torch.Generator, data_seed: int) -> None:
    """Seed the job's generator with ``data_seed`` and torch's global RNG (every device) with
    ``derive_seed(data_seed, "torch")``."""
    generator.manual_seed(data_seed)
    torch.manual_seed(derive_seed(data_seed, "torch"))


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _describe(rows: list[dict]) -> str:
    """One epoch's rows as text for a single log line: ``name value`` pairs, rows split by ``;``."""
    def text(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return "; ".join(" ".join(f"{k} {text(v)}" for k, v in r.items() if k != "epoch") for r in rows)
