"""Figures of the spectra stage: the SLQ density against t (curve beside line), the top Hessian
eigenvalue and the Hutchinson trace against t, and the short-direction count against t and at
the m-connector centres. Tables only (losslab.hessian writes them)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import plt, save


def _label(df: pd.DataFrame) -> pd.Series:
    """``bezier1`` / ``line`` / ``connector`` / ``centre`` for each row."""
    if "kind" not in df:
        return df["path"]
    kind = df["kind"].astype(str) + df["bends"].astype("Int64").astype(str)
    return df["path"].where(df["path"] != "curve", kind)


def _paths(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the curve tables with a ``label``; the line once (from the first curve)."""
    df = df.assign(label=_label(df))
    if "seed_a" in df:
        first = df.drop_duplicates(["seed_a", "seed_b"])[["seed_a", "seed_b"]].iloc[0]
        df = df[(df.path != "line") | ((df.seed_a == first.seed_a) & (df.seed_b == first.seed_b))]
    return df.drop_duplicates([c for c in ("label", "t", "start", "rank", "eigenvalue") if c in df])


def plot_density(density: pd.DataFrame, png, pdf=None) -> None:
    d = _paths(density)
    labels = [l for l in d["label"].unique() if l != "line"] + ["line"]
    top = float(d["density"].max())
    floor = top * 1e-5
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.8), squeeze=False, sharey=True)
    for ax, lab in zip(axes[0], labels):
        g = d[d.label == lab]
        piv = g.pivot_table(index="eigenvalue", columns="t", values="density")
        ts, grid = piv.columns.to_numpy(), piv.index.to_numpy()
        mesh = ax.pcolormesh(ts, grid, np.log10(piv.to_numpy().clip(min=floor)), shading="nearest", cmap="magma",
                             vmin=np.log10(floor), vmax=np.log10(top))
        pad = 0.5 * (ts[1] - ts[0]) if len(ts) > 1 else 0.05
        edges = (ts[0] - pad, ts[-1] + pad)
        ax.set(xlabel="t", title=f"{lab}: SLQ spectral density", xlim=edges, xticks=ts)
    axes[0][0].set_ylabel("Hessian eigenvalue")
    fig.colorbar(mesh, ax=axes[0].tolist(), shrink=0.85, label="log10 density")
    save(fig, png, pdf)


def _per_point(counts: pd.DataFrame, by: str = "t") -> pd.DataFrame:
    return counts.groupby(["label", by]).agg(
        count=("short_count", "mean"), lo=("short_count", "min"), hi=("short_count", "max"),
        top=("top_eigenvalue", "mean"), top_lo=("top_eigenvalue", "min"), top_hi=("top_eigenvalue", "max"),
        trace=("trace", "first"), trace_se=("trace_se", "first"), converged=("converged", "all"),
        saturated=("saturated", "any"), starts=("start", "nunique")).reset_index()


def _gather(curve: pd.DataFrame, connector: pd.DataFrame | None) -> pd.DataFrame:
    parts = [_paths(curve)]
    if connector is not None and len(connector):
        parts.append(connector.assign(label="connector"))
    return pd.concat(parts, ignore_index=True)


STYLE = {"line": dict(color="C3", marker="s", ls="--"), "connector": dict(color="C2", marker="^", ls=":")}


def plot_top_trace(curve: pd.DataFrame, png, pdf=None, connector: pd.DataFrame | None = None) -> None:
    c = _per_point(_gather(curve, connector))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (lab, g) in enumerate(c.groupby("label", sort=False)):
        st = STYLE.get(lab, dict(color=f"C{i}", marker="o", ls="-"))
        a1.errorbar(g["t"], g["top"], yerr=[g["top"] - g["top_lo"], g["top_hi"] - g["top"]], capsize=3, label=lab, **st)
        a2.errorbar(g["t"], g["trace"], yerr=2 * g["trace_se"], capsize=3, label=lab, **st)
    a1.set(xlabel="t", ylabel="largest Hessian eigenvalue", title="Top eigenvalue (Lanczos, range over starts)")
    a2.set(xlabel="t", ylabel="Hessian trace", title=f"Trace (Hutchinson, +-2 s.e., {int(curve['probes'].iloc[0])} probes)")
    a1.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_short(curve: pd.DataFrame, png, pdf=None, connector: pd.DataFrame | None = None,
               centres: pd.DataFrame | None = None) -> None:
    c = _per_point(_gather(curve, connector))
    thr = float(curve["threshold"].iloc[0])
    n_panels = 2 if centres is not None and len(centres) else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 3.8), squeeze=False)
    ax = axes[0][0]
    for i, (lab, g) in enumerate(c.groupby("label", sort=False)):
        st = STYLE.get(lab, dict(color=f"C{i}", marker="o", ls="-"))
        ax.errorbar(g["t"], g["count"], yerr=[g["count"] - g["lo"], g["hi"] - g["count"]], capsize=3, label=lab, **st)
        bad = g[~g.converged | g.saturated]
        ax.scatter(bad["t"], bad["count"], s=90, facecolors="none", edgecolors="k", zorder=5)
    ax.set(xlabel="t", ylabel=f"eigenvalues > {thr:g} (converged)",
           title=f"Short directions (mean, range over {int(c.starts.max())} starts)")
    ax.legend(fontsize=7, title="circled: unconverged or saturated", title_fontsize=6)
    if n_panels == 2:
        a2 = axes[0][1]
        k = _per_point(centres.assign(label="centre"), by="n")
        a2.errorbar(k["n"], k["count"], yerr=[k["count"] - k["lo"], k["hi"] - k["count"]], fmt="o-", capsize=3)
        bad = k[~k.converged | k.saturated]
        a2.scatter(bad["n"], bad["count"], s=90, facecolors="none", edgecolors="k", zorder=5)
        a2.set(xlabel="number of optima n (1 = an optimum)", ylabel=f"eigenvalues > {thr:g}",
               title="At the m-connector centre", xticks=k["n"].tolist())
    fig.tight_layout()
    save(fig, png, pdf)
