"""Figures of the curves stage, drawn from its Parquet tables only."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import plt, save


_CURVE_KEYS = ["kind", "bends", "setting", "seed_a", "seed_b", "alignment"]


def _label(g: pd.DataFrame) -> str:
    r = g.iloc[0]
    aligned = f" ({r['alignment']})" if r.get("alignment", "none") != "none" else ""
    return f"{r['kind']}{r['bends']} seeds {r['seed_a']}-{r['seed_b']}{aligned}"


def plot_along(along: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Loss and error (train, test) along t: each curve solid, the straight line dashed."""
    has_err = along["error"].notna().any()
    metrics = ["loss", "error"] if has_err else ["loss"]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.4 * len(metrics)), squeeze=False)
    groups = list(along.groupby(_CURVE_KEYS, sort=True))
    for i, metric in enumerate(metrics):
        for j, split in enumerate(("train", "test")):
            ax = axes[i][j]
            line_done = set()
            for n, (key, g) in enumerate(groups):
                gs = g[g.split == split]
                cur = gs[gs.path == "curve"].sort_values("t")
                ax.plot(cur["t"], cur[metric], "-", color=f"C{n % 10}", label=f"{_label(g)} curve")
                pair = tuple(key[2:])  # setting, seeds and alignment: the line differs after alignment
                if pair not in line_done:  # the line depends on the pair (and alignment) only
                    line_done.add(pair)
                    ln = gs[gs.path == "line"].sort_values("t")
                    aligned = f" ({key[5]})" if key[5] != "none" else ""
                    ax.plot(ln["t"], ln[metric], "--", color="0.3" if len(line_done) == 1 else f"C{(n + 5) % 10}",
                            label=f"line seeds {key[3]}-{key[4]}{aligned}")
            ax.set(xlabel="t", ylabel=f"{split} {metric}", title=f"{split} {metric} along the path")
            if metric == "error":
                ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_ensemble(ens: pd.DataFrame, png: str, pdf: str | None = None, split: str = "test") -> None:
    """Ensemble of w1 with phi(t) over t, curve against line; the w1 + w2 ensemble as reference."""
    e = ens[ens.split == split]
    has_acc = e["ensemble_accuracy"].notna().any()
    cols = [("ensemble_loss", "single_loss", "reference_loss", "NLL")]
    if has_acc:
        cols.append(("ensemble_accuracy", "single_accuracy", "reference_accuracy", "accuracy"))
    fig, axes = plt.subplots(1, len(cols), figsize=(5.2 * len(cols), 3.8), squeeze=False)
    for ax, (ecol, scol, rcol, name) in zip(axes[0], cols):
        for n, (key, g) in enumerate(e.groupby(_CURVE_KEYS, sort=True)):
            cur = g[g.path == "curve"].sort_values("t")
            ln = g[g.path == "line"].sort_values("t")
            c = f"C{n % 10}"
            ax.plot(cur["t"], cur[ecol], "-", color=c, label=f"{_label(g)}: ensemble w1 + phi(t)")
            ax.plot(cur["t"], cur[scol], ":", color=c, alpha=0.7, label=f"{_label(g)}: phi(t) alone")
            if n == 0:
                ax.plot(ln["t"], ln[ecol], "--", color="0.3", label="line: ensemble w1 + point")
                ax.axhline(g[rcol].iloc[0], color="k", lw=0.8, label="ensemble of w1 and w2")
        ax.set(xlabel="t", ylabel=f"{split} {name}", title=f"ensemble {name} ({split})")
        if name == "NLL":
            lo = np.nanmin(e[[ecol, rcol]].to_numpy())
            hi = np.nanmax(e[[ecol, scol]].to_numpy()) if np.isfinite(e[[ecol, scol]].to_numpy()).any() else 1
            ax.set_ylim(max(0.0, lo * 0.8), min(hi * 1.05, lo * 8 + 0.5))
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_functions(pred: pd.DataFrame, pts: pd.DataFrame, along: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Predictive functions at several t over the training data (left) and the training loss
    along the curve and the line with those t marked (right)."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.6, 1]})
    tr = pts[pts.split == "train"]
    ax.scatter(tr["x"], tr["y"], s=10, color="k", zorder=3, label="training data")
    if "target" in pred:
        g0 = pred[pred.t == pred.t.min()].sort_values("x")
        ax.plot(g0["x"], g0["target"], color="0.6", lw=1, ls=":", label="noiseless target")
    ts = sorted(pred["t"].unique())
    cmap = plt.get_cmap("plasma")
    for i, t in enumerate(ts):
        g = pred[pred.t == t].sort_values("x")
        ax.plot(g["x"], g["f"], color=cmap(0.85 * i / max(1, len(ts) - 1)), lw=1.5, label=f"t = {t:.2f}")
    ax.set(xlabel="x", ylabel="f(x)", title="predictive functions along the curve")
    ylo, yhi = tr["y"].min(), tr["y"].max()
    pad = 1.0 * (yhi - ylo)
    ax.set_ylim(ylo - pad, yhi + pad)
    ax.legend(fontsize=7, ncol=2)
    a = along[along.split == "train"]
    for path, style in (("curve", "-"), ("line", "--")):
        g = a[a.path == path].sort_values("t")
        ax2.plot(g["t"], g["loss"], style, color="C0" if path == "curve" else "0.3", label=path)
    cur = a[a.path == "curve"].sort_values("t")
    for i, t in enumerate(ts):
        k = (cur["t"] - t).abs().idxmin()
        ax2.plot(cur.loc[k, "t"], cur.loc[k, "loss"], "o", color=cmap(0.85 * i / max(1, len(ts) - 1)), ms=7)
    ax2.set(xlabel="t", ylabel="train MSE", yscale="log", title="training loss along the path")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)
