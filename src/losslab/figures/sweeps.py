"""Figures of the sweeps: tunnel profiles and widths (Figure 5), SWA vs ensembles (Figure 6).

Each function reads the Parquet tables of its stage only, never networks. Diverged settings and
runs are drawn explicitly (a red cross labelled "diverged") rather than silently left out.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import plt, save

PARAM_ORDER = ("lr", "batch_size", "l2", "dropout", "width")
PARAM_LABEL = {"lr": "learning rate", "batch_size": "batch size", "l2": "L2 (weight decay)",
               "dropout": "dropout rate", "width": "width multiplier"}


def _params(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["param"]))
    return [p for p in PARAM_ORDER if p in present] + [p for p in present if p not in PARAM_ORDER]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _grid(n: int, ncols: int = 3, size=(4.2, 3.4)):
    ncols = min(ncols, max(1, n))
    nrows = math.ceil(max(1, n) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat


def plot_tunnel_profiles(profiles: pd.DataFrame, summary: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Train loss against distance r from the optimum, one panel per hyper-parameter, one line
    per value (mean over seeds and directions; band: min to max over rays)."""
    params = _params(summary)
    fig, axes = _grid(len(params))
    thresholds = summary["threshold"].dropna().unique()
    for ax, param in zip(axes, params):
        vals = summary[summary["param"] == param].sort_values("value")
        cmap = plt.get_cmap("viridis")
        for i, row in enumerate(vals.itertuples()):
            c = cmap(i / max(1, len(vals) - 1))
            g = profiles[(profiles["param"] == param) & (profiles["value"] == row.value)]
            if row.status == "diverged" or g.empty:
                ax.plot([], [], "x", color="red", label=f"{_fmt(row.value)} (diverged)")
                continue
            st = g.groupby("r")["loss"].agg(["mean", "min", "max"]).reset_index()
            label = _fmt(row.value) + (" (some seeds diverged)" if row.status == "partial" else "")
            ax.plot(st["r"], st["mean"], color=c, label=label)
            ax.fill_between(st["r"], st["min"], st["max"], color=c, alpha=0.15, linewidth=0)
        if len(thresholds) == 1:
            ax.axhline(thresholds[0], color="k", ls=":", lw=1, label="threshold")
        ax.set(xlabel="distance r from the optimum", ylabel="train loss", yscale="log", title=PARAM_LABEL.get(param, param))
        ax.legend(fontsize=7, title=param, title_fontsize=7)
    fig.suptitle("Loss along random rays from each optimum (radial tunnels)")
    fig.tight_layout()
    save(fig, png, pdf)


def plot_tunnel_widths(summary: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Tunnel width against each hyper-parameter; error bars: std over seeds and directions.
    Values are placed at equal spacing (a categorical axis, so 0 and log-spaced values mix)."""
    params = _params(summary)
    fig, axes = _grid(len(params))
    for ax, param in zip(axes, params):
        vals = summary[summary["param"] == param].sort_values("value").reset_index(drop=True)
        x = np.arange(len(vals))
        ok = vals["status"] != "diverged"
        ax.errorbar(x[ok], vals.loc[ok, "width_mean"], yerr=vals.loc[ok, "width_std"], fmt="o-", capsize=3, color="C0",
                    label="width (mean ± std)")
        cens = ok & (vals["censored_fraction"] > 0)
        if cens.any():
            ax.plot(x[cens], vals.loc[cens, "width_mean"], "^", color="C1", label="some rays censored at r_max")
        part = vals["status"] == "partial"
        for xi in x[part]:
            ax.annotate("some seeds\ndiverged", (xi, vals.loc[xi, "width_mean"]), fontsize=6, color="red",
                        textcoords="offset points", xytext=(4, 4))
        div = ~ok
        if div.any():
            ax.plot(x[div], np.zeros(int(div.sum())), "x", color="red", ms=10, mew=2, label="diverged")
            for xi in x[div]:
                ax.annotate("diverged", (xi, 0), fontsize=7, color="red", textcoords="offset points", xytext=(0, 8), ha="center")
        ax.set_xticks(x, [_fmt(v) for v in vals["value"]])
        ax.set(xlabel=PARAM_LABEL.get(param, param), ylabel="tunnel width r*", title=f"width vs {param}")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle("Radial tunnel width (distance where the train loss first exceeds the threshold)")
    fig.tight_layout()
    save(fig, png, pdf)


SWA_KINDS = (("swa", "SWA (mean weights)", "C0", "o"), ("ensemble", "snapshot ensemble", "C1", "s"),
             ("best", "best single snapshot", "C2", "^"))


def plot_swa_accuracy(summary: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Test accuracy (top) and NLL (bottom) of SWA, the ensemble and the best snapshot against
    the learning rate, one column per schedule; mean ± std over seeds."""
    test = summary[summary["split"] == "test"]
    schedules = list(dict.fromkeys(test["schedule"]))
    fig, axes = plt.subplots(2, len(schedules), figsize=(4.8 * len(schedules), 6.4), squeeze=False)
    for j, sched in enumerate(schedules):
        g = test[test["schedule"] == sched]
        ok = g[g["status"] == "ok"]
        for row, metric, ylabel in ((0, "accuracy", "test accuracy"), (1, "loss", "test NLL")):
            ax = axes[row, j]
            for kind, label, c, m in SWA_KINDS:
                st = ok.groupby("lr")[f"{kind}_{metric}"].agg(["mean", "std"]).reset_index()
                ax.errorbar(st["lr"], st["mean"], yerr=st["std"].fillna(0), fmt=m + "-", color=c, capsize=3, label=label)
            div = g[g["status"] != "ok"].groupby("lr").size()
            if len(div):
                y0 = 0.0 if metric == "accuracy" else max(1e-3, float(ok[f"swa_{metric}"].min()) if len(ok) else 1.0)
                ax.plot(div.index, [y0] * len(div), "x", color="red", ms=10, mew=2, label="diverged")
            ax.set_xscale("log")
            if metric == "loss":
                ax.set_yscale("log")
            ax.set(xlabel="learning rate", ylabel=ylabel, title=f"{sched} schedule" if row == 0 else "")
            ax.legend(fontsize=7)
    fig.suptitle("SWA against snapshot ensembles")
    fig.tight_layout()
    save(fig, png, pdf)


def plot_swa_lines(lines: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Train loss along the segments between consecutive snapshots (mean over pairs and seeds)
    and, as a star at t = 0.5, the loss at the mean of all snapshots; one panel per schedule."""
    tr = lines[(lines["split"] == "train") & (lines["status"] == "ok")]
    schedules = list(dict.fromkeys(lines["schedule"]))
    fig, axes = plt.subplots(1, len(schedules), figsize=(4.8 * len(schedules), 3.8), squeeze=False)
    for ax, sched in zip(axes[0], schedules):
        g = tr[tr["schedule"] == sched]
        lrs = sorted(lines.loc[lines["schedule"] == sched, "lr"].unique())
        cmap = plt.get_cmap("plasma")
        for i, lr in enumerate(lrs):
            c = cmap(i / max(1, len(lrs) - 1) * 0.85)
            seg = g[(g["lr"] == lr) & (g["kind"] == "line")]
            if seg.empty:
                ax.plot([], [], "x", color="red", label=f"lr {_fmt(lr)} (diverged)")
                continue
            st = seg.groupby("t")["loss"].mean()
            ax.plot(st.index, st.values, color=c, label=f"lr {_fmt(lr)}")
            mean = g[(g["lr"] == lr) & (g["kind"] == "mean")]["loss"].mean()
            ax.plot([0.5], [mean], "*", color=c, ms=11, mec="k", mew=0.5)
        ax.plot([], [], "*", color="grey", mec="k", label="mean of all snapshots")
        ax.set(xlabel="t between consecutive snapshots", ylabel="train loss", yscale="log", title=f"{sched} schedule")
        ax.legend(fontsize=7)
    fig.suptitle("Do consecutive snapshots share one low-loss wedge?")
    fig.tight_layout()
    save(fig, png, pdf)
