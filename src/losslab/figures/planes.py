"""Loss-plane figures and the curve-training animation, drawn from Parquet tables only.

* :func:`plot_plane` -- filled contours of train and test loss over a plane with log-spaced
  levels, the defining points marked, and (for a curve plane) the curve with marked t values.
* :func:`animate_curve` -- one frame per saved curve epoch on the same fixed plane, grid and
  colour scale; each frame overlays that epoch's curve projected onto the plane and notes its
  largest off-plane distance. GIF through matplotlib + pillow, MP4 when ffmpeg is present.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import animation
from matplotlib.colors import LogNorm
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from . import plt, save
from ..io import atomic_path


def grid_arrays(grid: pd.DataFrame, split: str, column: str = "loss"):
    """(xs, ys, Z[iy, ix]) of one split of a gathered grid table."""
    g = grid[grid["split"] == split]
    if g.empty:
        raise ValueError(f"the grid table has no rows for split {split!r}")
    nx, ny = int(g["ix"].max()) + 1, int(g["iy"].max()) + 1
    z = np.full((ny, nx), np.nan)
    z[g["iy"].to_numpy(), g["ix"].to_numpy()] = g[column].to_numpy()
    xs = np.full(nx, np.nan)
    ys = np.full(ny, np.nan)
    xs[g["ix"].to_numpy()] = g["x"].to_numpy()
    ys[g["iy"].to_numpy()] = g["y"].to_numpy()
    return xs, ys, z


def log_levels(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` log-spaced levels between the smallest and the largest finite positive value."""
    v = values[np.isfinite(values) & (values > 0)]
    if v.size == 0:
        return np.geomspace(1e-3, 1.0, n)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo * 1.0001:
        hi = lo * 1.01
    return np.geomspace(lo, hi, n)


def _draw(ax, xs, ys, z, levels):
    zc = np.clip(np.where(np.isfinite(z), z, levels[-1]), levels[0], levels[-1])
    return ax.contourf(xs, ys, zc, levels=levels, norm=LogNorm(levels[0], levels[-1]), cmap="viridis", extend="neither")


def _colorbar(fig, cs, ax, label):
    cb = fig.colorbar(cs, ax=ax)
    lv = cs.levels
    cb.set_ticks(lv[:: max(1, len(lv) // 6)])
    cb.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    cb.ax.yaxis.set_minor_formatter(NullFormatter())
    cb.set_label(label)
    return cb


def _axis_labels(ax, points: pd.DataFrame):
    if points["kind"].iloc[0] == "random" and "normalization" in points and points["normalization"].iloc[0] == "unit":
        ax.set(xlabel="distance along random unit direction 1", ylabel="distance along random unit direction 2")
    elif points["kind"].iloc[0] == "random":
        ax.set(xlabel="direction 1 (direction lengths)", ylabel="direction 2 (direction lengths)")
    else:
        ax.set(xlabel="x: distance along e1 (weight space)", ylabel="y: distance along e2")


def _points(ax, points: pd.DataFrame):
    for _, r in points.iterrows():
        ax.plot(r["x"], r["y"], "o", color="white", mec="black", ms=7, zorder=5)
        ax.annotate(str(r["point"]), (r["x"], r["y"]), textcoords="offset points", xytext=(6, 6), color="white",
                    fontsize=8, zorder=6)


def _curve(ax, track: pd.DataFrame, source="final", epoch=None, color="magenta"):
    c = track[track["source"] == source] if epoch is None else track[(track["source"] == source) & (track["epoch"] == epoch)]
    c = c.sort_values("t")
    line, = ax.plot(c["x"], c["y"], "-", color=color, lw=2, zorder=4)
    m = c[c["mark"]]
    marks = ax.scatter(m["x"], m["y"], s=30, facecolor=color, edgecolor="white", zorder=6)
    return line, marks, c


def plot_plane(grid: pd.DataFrame, points: pd.DataFrame, track: pd.DataFrame | None, png: str, pdf: str | None = None,
               levels: int = 24, t_marks=(), title: str = "") -> None:
    """Train and test loss over the plane (two panels), points marked, curve overlaid."""
    splits = [s for s in ("train", "test") if (grid["split"] == s).any()]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.4 * len(splits), 4.6), squeeze=False)
    for ax, split in zip(axes[0], splits):
        xs, ys, z = grid_arrays(grid, split)
        lv = log_levels(z, levels)
        cs = _draw(ax, xs, ys, z, lv)
        _colorbar(fig, cs, ax, f"{split} loss (log scale)")
        if track is not None:
            _, _, c = _curve(ax, track)
            for _, r in c[c["mark"]].iterrows():
                ax.annotate(f"t={r['t']:g}", (r["x"], r["y"]), textcoords="offset points", xytext=(4, -10),
                            color="magenta", fontsize=7, zorder=7)
        _points(ax, points)
        _axis_labels(ax, points)
        ax.set_title(f"{split} loss")
        if not np.isfinite(z).any():  # e.g. a diverged endpoint: say so instead of a flat colour
            ax.set_title(f"{split} loss: no finite value (diverged)", color="red")
            ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center", va="center", color="red",
                    fontsize=20, zorder=8)
        ax.set_aspect("equal" if points["kind"].iloc[0] != "random" else "auto")
        ax.set_xlim(xs.min(), xs.max())
        ax.set_ylim(ys.min(), ys.max())
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)


def _save_anim(anim, path, writer) -> None:
    """Save atomically; the writers infer the format from the suffix, so the temporary file
    keeps it."""
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + Path(path).suffix)
        try:
            anim.save(str(named), writer=writer)
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)


def animate_curve(grid: pd.DataFrame, points: pd.DataFrame, track: pd.DataFrame, gif: str, mp4: str | None = None,
                  levels: int = 24, fps: float = 4, split: str = "train", title: str = "") -> int:
    """Curve training in its fixed plane; returns the number of frames."""
    epochs = sorted(track.loc[track["source"] == "epoch", "epoch"].unique())
    if not epochs:
        raise ValueError("the track has no epoch rows: nothing to animate")
    xs, ys, z = grid_arrays(grid, split)
    lv = log_levels(z, levels)
    fig, ax = plt.subplots(figsize=(6, 4.8))
    cs = _draw(ax, xs, ys, z, lv)
    _colorbar(fig, cs, ax, f"{split} loss (log scale)")
    _points(ax, points)
    _axis_labels(ax, points)
    ax.set_aspect("equal")
    ax.set_xlim(xs.min(), xs.max())
    ax.set_ylim(ys.min(), ys.max())
    line, = ax.plot([], [], "-", color="magenta", lw=2, zorder=4)
    marks = ax.scatter([], [], s=30, facecolor="magenta", edgecolor="white", zorder=6)
    label = ax.set_title("")
    if title:
        fig.suptitle(title, fontsize=9)

    def frame(k):
        e = epochs[k]
        c = track[(track["source"] == "epoch") & (track["epoch"] == e)].sort_values("t")
        line.set_data(c["x"], c["y"])
        m = c[c["mark"]]
        marks.set_offsets(np.c_[m["x"], m["y"]] if len(m) else np.empty((0, 2)))
        label.set_text(f"curve at epoch {e} (max off-plane distance {c['residual'].max():.3g})")
        return line, marks, label

    anim = animation.FuncAnimation(fig, frame, frames=len(epochs), blit=False)
    _save_anim(anim, gif, animation.PillowWriter(fps=fps))
    if mp4:
        _save_anim(anim, mp4, animation.FFMpegWriter(fps=fps))
    plt.close(fig)
    return len(epochs)
