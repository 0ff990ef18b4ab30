"""Figures of the align stage: lines before and after alignment (with the curves), the barrier
against width, and instability against the spawn epoch."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import plt, save

STYLE = {"naive": ("0.2", "--"), "aligned": (None, "-"), "aligned+repair": (None, ":")}
METHOD_COLOUR = {"weight_matching": "C0", "activation_matching": "C1", "none": "0.2"}


def plot_lines(lines: pd.DataFrame, along: pd.DataFrame | None, png, pdf=None) -> None:
    """Train loss and test error along the line from A to B: naive, after each alignment, with
    REPAIR; the trained curves between A and B (and between A and aligned B) for comparison."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, (split, metric) in zip(axes, (("train", "loss"), ("test", "error"))):
        for (alignment, method), g in lines[lines.split == split].groupby(["alignment", "method"], sort=True):
            g = g.sort_values("alpha")
            colour = METHOD_COLOUR.get(alignment, "C2")
            style = STYLE.get(method, (None, "-"))[1]
            label = "naive line" if method == "naive" else f"{alignment.replace('_', ' ')}: {method}"
            ax.plot(g["alpha"], g[metric], style, color=colour, label=label)
        if along is not None and len(along):
            a = along[(along.split == split) & (along.path == "curve")]
            for n, (key, g) in enumerate(a.groupby(["kind", "bends", "alignment"], sort=True)):
                g = g.sort_values("t")
                what = "curve" if key[2] == "none" else f"curve to {key[2].replace('_', ' ')}-aligned B"
                ax.plot(g["t"], g[metric], "-", lw=2.5, alpha=0.5, color=f"C{4 + n}", label=f"{key[0]}{key[1]} {what}")
        ax.set(xlabel="alpha (line) / t (curve)", ylabel=f"{split} {metric}", title=f"{split} {metric} from A to B")
        if metric == "error":
            ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_width(table: pd.DataFrame, png, pdf=None) -> None:
    """Barrier (train loss, test error) against the width multiplier: naive, aligned, aligned +
    REPAIR; mean and standard deviation over the seed pairs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (split, metric) in zip(axes, (("train", "loss"), ("test", "error"))):
        t = table[(table.split == split) & (table.metric == metric)]
        for (alignment, method), g in t.groupby(["alignment", "method"], sort=True):
            s = g.groupby("width")["barrier"].agg(["mean", "std", "count"]).reset_index()
            label = "naive" if method == "naive" else f"{alignment.replace('_', ' ')}: {method}"
            ax.errorbar(s["width"], s["mean"], yerr=s["std"].fillna(0), fmt="o" + STYLE.get(method, (None, "-"))[1],
                        color=METHOD_COLOUR.get(alignment, "C2"), capsize=3, label=label)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set(xscale="log", xlabel="width multiplier", ylabel=f"{split} {metric} barrier",
               title=f"line barrier ({split} {metric}) against width")
        ax.set_xticks(sorted(t["width"].unique()), labels=[f"{w:g}" for w in sorted(t["width"].unique())])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_instability(table: pd.DataFrame, png, pdf=None) -> None:
    """Barrier of the line between two copies spawned at epoch k, against k (Frankle et al.)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (split, metric) in zip(axes, (("test", "error"), ("train", "loss"))):
        t = table[(table.split == split) & (table.metric == metric)].sort_values("k")
        ok = t[t.status == "ok"]
        ax.plot(ok["k"], ok["barrier"], "o-", color="C3")
        bad = t[t.status != "ok"]
        if len(bad):
            ax.plot(bad["k"], np.zeros(len(bad)), "x", color="red", ms=9, label="diverged")
            ax.legend(fontsize=7)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set(xscale="symlog", xlabel="spawn epoch k", ylabel=f"{split} {metric} barrier",
               title=f"instability: {split} {metric} barrier between the two copies")
    fig.tight_layout()
    save(fig, png, pdf)
