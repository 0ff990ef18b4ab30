"""Ensembles of points in weight space, compared at equal training budget.

Any method that yields members (flat weight vectors) is evaluated the same way: the ensemble of
its first ``n`` members (mean of predicted probabilities; mean output for regression) for each
``n``, with the diversity that explains why an ensemble wins: the mean pairwise disagreement of
the members' predictions and their mean pairwise distance in weight space. BatchNorm statistics
of each member are recomputed on the fixed subset unless the member comes with its own buffers.

Column vocabulary (docs/columns.md): ``loss`` is the data loss (the NLL of the averaged
probabilities for classification, MSE for regression), ``accuracy``, ``disagreement`` (test
split), ``distance`` (Euclidean, weight space), ``n_members``, ``budget_epochs`` (training epochs
spent, the endpoints' own included).
"""
from __future__ import annotations

import itertools
import math

import pandas as pd
import torch

from .flat import FlatModel, metrics_from_outputs


def ensemble_metrics(outputs: list[torch.Tensor], y: torch.Tensor, task: str) -> dict[str, float]:
    """Loss and accuracy of the ensemble of ``outputs`` (logits, or regression outputs)."""
    if task == "classification":
        probs = torch.stack([o.softmax(-1) for o in outputs]).mean(0)
        loss = torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y).item()
        return {"loss": loss, "accuracy": (probs.argmax(-1) == y).float().mean().item()}
    return metrics_from_outputs(torch.stack(outputs).mean(0), y, task)


@torch.no_grad()
def member_outputs(fm: FlatModel, members: torch.Tensor, ev, buffers: list[dict] | None = None,
                   splits=("train", "test"), batch_size: int = 4096, bn_batch: int | None = None) -> dict:
    """``{split: [outputs of member 1, ...]}`` on the fixed subsets of ``ev``. A member's
    BatchNorm statistics are its ``buffers[i]`` when given, else recomputed on ``ev.bn_x``."""
    out: dict = {s: [] for s in splits}
    for i, vec in enumerate(members):
        bufs = buffers[i] if buffers is not None else (fm.recompute_bn(vec, ev.bn_x, bn_batch) if fm.has_bn else None)
        for s in splits:
            out[s].append(fm.outputs(vec, ev.split(s)[0], bufs or None, batch_size))
    return out


def disagreement(outputs: list[torch.Tensor]) -> float:
    """Mean over member pairs of the fraction of samples whose predicted classes differ."""
    preds = [o.argmax(-1) for o in outputs]
    pairs = list(itertools.combinations(range(len(preds)), 2))
    if not pairs:
        return math.nan
    return float(sum((preds[i] != preds[j]).float().mean() for i, j in pairs) / len(pairs))


def distance(members: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between member weight vectors (NaN for one member)."""
    if members.shape[0] < 2:
        return math.nan
    return float(torch.pdist(members.double()).mean())


def subset_rows(outputs: dict, members: torch.Tensor, ev, task: str, subsets) -> list[dict]:
    """One row per (subset of member indices, split): ``n_members``, ``loss`` and ``accuracy`` of
    the subset's ensemble, the members' ``disagreement`` (classification) and weight-space
    ``distance``; ``outputs`` from :func:`member_outputs`."""
    rows = []
    subsets = [list(s) for s in subsets]
    for split, o in outputs.items():
        for idx in subsets:
            outs = [o[i] for i in idx]
            ens = ensemble_metrics(outs, ev.split(split)[1], task)
            rows.append({"split": split, "n_members": len(idx), "loss": ens["loss"], "accuracy": ens["accuracy"],
                         "disagreement": disagreement(outs) if task == "classification" else math.nan,
                         "distance": distance(members[idx])})
    return rows


def growing(fm: FlatModel, members: torch.Tensor, ev, task: str, buffers: list[dict] | None = None,
            sizes=None, batch_size: int = 4096, bn_batch: int | None = None) -> pd.DataFrame:
    """Ensembles of the first ``n`` members for each ``n`` in ``sizes`` (default 1..M): rows as
    :func:`subset_rows`, with ``member_loss`` and ``member_accuracy`` of member ``n`` alone."""
    outs = member_outputs(fm, members, ev, buffers, batch_size=batch_size, bn_batch=bn_batch)
    sizes = range(1, members.shape[0] + 1) if sizes is None else sizes
    rows = subset_rows(outs, members, ev, task, [range(n) for n in sizes])
    for r in rows:  # member n alone: the single network at that budget
        one = metrics_from_outputs(outs[r["split"]][r["n_members"] - 1], ev.split(r["split"])[1], task)
        r.update(member_loss=one["loss"], member_accuracy=one["accuracy"])
    return pd.DataFrame(rows)


def simplex_samples(n: int, members: int, seed: int) -> torch.Tensor:
    """``members`` points drawn uniformly from the simplex of ``n`` vertices (barycentric,
    ``[members, n]``, float64), seeded."""
    g = torch.Generator().manual_seed(int(seed))
    e = -torch.log(torch.rand(members, n, generator=g, dtype=torch.float64).clamp_min(1e-12))
    return e / e.sum(1, keepdim=True)
