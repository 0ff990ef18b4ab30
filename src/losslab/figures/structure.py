"""Figures of the large-scale-structure stages (toy wedge model, connectors, m-connectors).

Every function reads a Parquet table (as a DataFrame) and writes PNG (+PDF); nothing here
evaluates a loss.
"""
from __future__ import annotations

import matplotlib.tri as mtri
import numpy as np
import pandas as pd

from . import plt, save

FLOOR = 1e-7


def plot_hyperplanes(df: pd.DataFrame, png, pdf=None) -> None:
    s = int(df["s"].iloc[0])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(df["d"], df["final_loss"].clip(lower=FLOOR), s=14, alpha=0.6, label="one random plane")
    g = df.groupby("d")["final_loss"]
    ax.plot(g.mean().index, g.mean().clip(lower=FLOOR), "-", color="C1", label="mean over planes")
    ax.axvline(s, color="k", ls="--", lw=1, label=f"d = s = {s}")
    ax.set(xlabel="plane dimension d", ylabel="final surrogate loss", yscale="log",
           title=f"Optimising in random d-planes (D={int(df['D'].iloc[0])}, s={s})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def _cos_matrix(cos: pd.DataFrame):
    m = cos.pivot(index="i", columns="j", values="cosine").to_numpy()
    t = cos.drop_duplicates("i").sort_values("i")["t_i"].to_numpy()
    return m, t


def _draw_cosines(ax, cos: pd.DataFrame, title: str):
    m, t = _cos_matrix(cos)
    im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r", origin="upper",
                   extent=(t[0] - 0.5 / len(t), t[-1] + 0.5 / len(t), t[-1] + 0.5 / len(t), t[0] - 0.5 / len(t)))
    ax.set(xlabel="t of node", ylabel="t of node", title=title)
    return im


def plot_tunnel(path: pd.DataFrame, cos: pd.DataFrame, png, pdf=None) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, g in path.groupby("path"):
        axes[0].plot(g["t"], g["loss"], label=name)
    axes[0].set(xlabel="t along the path", ylabel="surrogate loss", title="Line vs connector between two optima")
    axes[0].legend()
    im = _draw_cosines(axes[1], cos, "cosine of deviations from the line")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_radial(df: pd.DataFrame, png, pdf=None) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for _, g in df.groupby("direction"):
        ax.plot(g["r"], g["loss"], color="C0", alpha=0.15, lw=0.8)
    stats = df.groupby("r")["loss"].agg(["mean", "min", "max"])
    ax.plot(stats.index, stats["mean"], color="C1", lw=2, label="mean over directions")
    ax.fill_between(stats.index, stats["min"], stats["max"], color="C1", alpha=0.2, label="min-max")
    ax.set(xlabel="distance r along a random unit direction", ylabel="surrogate loss",
           title=f"Radial probe from a point {df['offset'].iloc[0]:g} from a wedge")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_connector_path(path: pd.DataFrame, png, pdf=None) -> None:
    has_acc = path["accuracy"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.8), squeeze=False)
    axes = axes[0]
    styles = {"train": "-", "test": "--"}
    colors = {"line": "C3", "connector": "C0"}
    for (name, split), g in path.groupby(["path", "split"]):
        g = g.sort_values("t")
        axes[0].plot(g["t"], g["loss"], styles[split], color=colors.get(name, "C2"), label=f"{name} ({split})")
        if has_acc:
            axes[1].plot(g["t"], g["accuracy"], styles[split], color=colors.get(name, "C2"), label=f"{name} ({split})")
    axes[0].set(xlabel="t", ylabel="loss", title="Loss along the straight line and the connector")
    axes[0].legend(fontsize=7)
    if has_acc:
        axes[1].set(xlabel="t", ylabel="accuracy", title="Accuracy")
    fig.tight_layout()
    save(fig, png, pdf)


def plot_cosines(cos: pd.DataFrame, png, pdf=None) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 4))
    im = _draw_cosines(ax, cos, "Connector: cosine of deviations from the line")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_agreement(path: pd.DataFrame, png, pdf=None) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    test = path[path["split"] == "test"]
    if "agree_a" not in test or test["agree_a"].isna().all():
        ax.text(0.5, 0.5, "no class predictions (regression task)", ha="center", transform=ax.transAxes)
    else:
        for name, g in test.groupby("path"):
            g = g.sort_values("t")
            ls = "-" if name == "connector" else ":"
            ax.plot(g["t"], g["agree_a"], ls, color="C0", label=f"{name}: agrees with optimum A")
            ax.plot(g["t"], g["agree_b"], ls, color="C1", label=f"{name}: agrees with optimum B")
    ax.set(xlabel="t", ylabel="fraction of test predictions", ylim=(0, 1.02),
           title="Predictions agreeing with each endpoint")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def _per_start(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """Counts per point over the Lanczos starts (tables without a start column: one start)."""
    df = df if "start" in df else df.assign(start=0)
    one = df.groupby([by, "start"]).agg(count=("short_count", "first"), top=("eigenvalue", "max")).reset_index()
    return one.groupby(by).agg(count=("count", "mean"), lo=("count", "min"), hi=("count", "max"),
                               top=("top", "mean"), starts=("start", "nunique")).reset_index()


def plot_short(short: pd.DataFrame, png, pdf=None) -> None:
    counts = _per_start(short, "t")
    thr, k = short["threshold"].iloc[0], short["top_k"].max()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.errorbar(counts["t"], counts["count"], yerr=[counts["count"] - counts["lo"], counts["hi"] - counts["count"]],
                fmt="o-", color="C0", capsize=3)
    ax.set(xlabel="t along the connector", ylabel=f"short directions (eigenvalues > {thr:g})",
           title=f"Short directions along the connector (converged, {int(counts.starts.max())} starts, cap {k})")
    ax2 = ax.twinx()
    ax2.plot(counts["t"], counts["top"], "s--", color="C3", alpha=0.6)
    ax2.set_ylabel("largest Hessian eigenvalue", color="C3")
    fig.tight_layout()
    save(fig, png, pdf)


def plot_triangle(surface: pd.DataFrame, png, pdf=None) -> None:
    tr = surface[surface["split"] == "train"]
    names = [n for n in ("flat", "mconnector") if n in set(tr["surface"])]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.2), squeeze=False)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    for ax, name in zip(axes[0], names):
        g = tr[tr["surface"] == name]
        vmax = max(float(g["loss"].max()), 1e-12)  # each panel its own scale: a low surface stays readable
        w = g[["w0", "w1", "w2"]].to_numpy()
        xy = w @ corners
        tri = mtri.Triangulation(xy[:, 0], xy[:, 1])
        cs = ax.tricontourf(tri, g["loss"].to_numpy(), levels=np.linspace(0, vmax, 21), cmap="viridis")
        # the evaluated grid itself (the points the scorecard's mconnector_low_loss reads), coloured by loss
        ax.scatter(xy[:, 0], xy[:, 1], c=g["loss"].to_numpy(), cmap="viridis", vmin=0, vmax=vmax, s=9,
                   edgecolors="k", linewidths=0.25, zorder=3)
        if name == "mconnector" and "resolution" in g:  # the optimised nodes: the grid of 1/resolution
            r = int(g["resolution"].iloc[0])
            nodes = np.array([(r - a - b, a, b) for a in range(r + 1) for b in range(r + 1 - a)], float) / r
            nxy = nodes @ corners
            ax.scatter(nxy[:, 0], nxy[:, 1], s=45, facecolors="none", edgecolors="r", linewidths=1.0, zorder=4,
                       label="optimised nodes")
            ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
        for i, c in enumerate(corners):
            ax.annotate(f"optimum {i}", c, ha="center", va="top" if i < 2 else "bottom", fontsize=8,
                        xytext=(0, -4 if i < 2 else 4), textcoords="offset points")
        ax.set_xlim(-0.15, 1.15)
        ax.set_ylim(-0.1, 0.98)
        ax.set_aspect("equal")
        ax.axis("off")
        title = {"flat": "flat simplex of the optima", "mconnector": "m-connector surface"}[name]
        ax.set_title(f"{title}\ntrain loss over {len(g)} grid points: 95th percentile "
                     f"{g['loss'].quantile(0.95):.3g}, max {g['loss'].max():.3g}", fontsize=9)
        fig.colorbar(cs, ax=ax, shrink=0.8, label="train loss")
    fig.tight_layout()
    save(fig, png, pdf)


def plot_centre(centre: pd.DataFrame, png, pdf=None) -> None:
    c = _per_start(centre, "n").merge(centre.groupby("n").agg(loss=("centre_train_loss", "first")).reset_index())
    thr = centre["threshold"].iloc[0]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar(c["n"], c["count"], yerr=[c["count"] - c["lo"], c["hi"] - c["count"]], fmt="o-", capsize=3)
    ax.set(xlabel="number of optima n (1 = an optimum itself)", ylabel=f"short directions (> {thr:g})",
           title="Short directions at the m-connector centre", xticks=c["n"].tolist())
    for _, r in c.iterrows():
        ax.annotate(f"loss {r['loss']:.2g}", (r["n"], r["count"]), fontsize=7, xytext=(3, -10), textcoords="offset points")
    fig.tight_layout()
    save(fig, png, pdf)
