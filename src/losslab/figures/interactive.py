"""Interactive 3-D loss landscapes: one self-contained HTML file per plane, drawn with plotly from the
planes stage's Parquet tables only (grid, points and, for a curve's plane, the curve track).

Train and test loss are two surfaces side by side, each with its contour lines projected on the floor;
the plane's defining points, the final curve and its marked t values sit on the surface (their
height is the grid's value at their (x, y), interpolated bilinearly). A button switches the height
between the loss and its base-10 logarithm (the static figures use a log colour scale). The file
inlines plotly.js, so it opens offline, and the Snakemake report embeds it beside the PNG.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..io import atomic_path
from .planes import grid_arrays

LIFT = 0.01  # curves and points float this fraction of the z range above the surface


def grid_value_at(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, x, y) -> np.ndarray:
    """Bilinear interpolation of a grid ``z[iy, ix]`` (axes ``xs``, ``ys`` increasing) at the points
    ``(x, y)``; points outside the grid take the value at its nearest edge."""
    x = np.clip(np.asarray(x, dtype=float), xs[0], xs[-1])
    y = np.clip(np.asarray(y, dtype=float), ys[0], ys[-1])
    i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
    j = np.clip(np.searchsorted(ys, y, side="right") - 1, 0, len(ys) - 2)
    fx = (x - xs[i]) / (xs[i + 1] - xs[i])
    fy = (y - ys[j]) / (ys[j + 1] - ys[j])
    return ((1 - fx) * (1 - fy) * z[j, i] + fx * (1 - fy) * z[j, i + 1] + (1 - fx) * fy * z[j + 1, i]
            + fx * fy * z[j + 1, i + 1])


def _log10(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    pos = v[np.isfinite(v) & (v > 0)]
    floor = pos.min() if pos.size else 1e-12
    return np.log10(np.where(np.isfinite(v), np.maximum(v, floor), np.nan))


def _plain(a) -> list:
    """A nested list with None for non-finite values (plain JSON in the HTML, readable by tests)."""
    a = np.asarray(a, dtype=float)
    if a.ndim > 1:
        return [_plain(r) for r in a]
    return [float(v) if math.isfinite(v) else None for v in a]


def plane_figure(grid: pd.DataFrame, points: pd.DataFrame | None = None, track: pd.DataFrame | None = None,
                 column: str = "loss", t_marks=(), title: str = "") -> go.Figure:
    """The plotly figure of one plane (see the module doc). ``t_marks`` adds t labels to marked
    points of the track beyond its own ``mark`` column."""
    splits = [s for s in ("train", "test") if (grid["split"] == s).any()]
    if not splits:
        raise ValueError("the grid table has no train or test rows")
    fig = make_subplots(rows=1, cols=len(splits), specs=[[{"type": "scene"}] * len(splits)],
                        subplot_titles=[f"{s} {column}" for s in splits], horizontal_spacing=0.02)
    heights = {"linear": [], "log": []}  # per trace, for the toggle

    def add(trace, values, col):
        fig.add_trace(trace, row=1, col=col)
        heights["linear"].append(_plain(values))
        heights["log"].append(_plain(_log10(values)))

    for k, split in enumerate(splits):
        col = k + 1
        xs, ys, z = grid_arrays(grid, split, column)
        zmin, zmax = (float(np.nanmin(z)), float(np.nanmax(z))) if np.isfinite(z).any() else (0.0, 1.0)
        add(go.Surface(x=xs.tolist(), y=ys.tolist(), z=_plain(z), colorscale="Viridis", name=f"{split} {column}",
                       contours={"z": {"show": True, "usecolormap": True, "project_z": True}},
                       colorbar={"x": col / len(splits) - 0.03, "len": 0.7, "thickness": 12},
                       hovertemplate="x %{x:.3g}<br>y %{y:.3g}<br>" + column + " %{z:.4g}<extra></extra>"),
            z, col)
        lift = LIFT * (zmax - zmin)
        marks = set(np.round(np.asarray(list(t_marks), dtype=float), 9))
        if track is not None and (track["source"] == "final").any():
            c = track[track["source"] == "final"].sort_values("t")
            h = grid_value_at(xs, ys, z, c["x"], c["y"]) + lift
            add(go.Scatter3d(x=c["x"].tolist(), y=c["y"].tolist(), z=_plain(h), mode="lines",
                             line={"color": "magenta", "width": 6}, name="curve", showlegend=k == 0,
                             legendgroup="curve", customdata=c["t"].tolist(),
                             hovertemplate="t %{customdata:.3g}<extra>curve</extra>"), h, col)
            m = c[c["mark"].astype(bool) | np.round(c["t"], 9).isin(marks)]
            if len(m):
                hm = grid_value_at(xs, ys, z, m["x"], m["y"]) + lift
                add(go.Scatter3d(x=m["x"].tolist(), y=m["y"].tolist(), z=_plain(hm), mode="markers+text",
                                 marker={"color": "magenta", "size": 4}, text=[f"t={t:g}" for t in m["t"]],
                                 name="marked t", showlegend=k == 0, legendgroup="marks"), hm, col)
        if points is not None and len(points):
            hp = grid_value_at(xs, ys, z, points["x"], points["y"]) + lift
            add(go.Scatter3d(x=points["x"].tolist(), y=points["y"].tolist(), z=_plain(hp), mode="markers+text",
                             marker={"color": "white", "size": 5, "line": {"color": "black", "width": 1}},
                             text=[str(p) for p in points["point"]], name="points", showlegend=k == 0,
                             legendgroup="points"), hp, col)

    def axes(log: bool) -> dict:
        label = f"log10 {column}" if log else column
        return {f"{'scene' if k == 0 else f'scene{k + 1}'}.zaxis.title.text": label for k in range(len(splits))}

    fig.update_layout(
        title={"text": title, "x": 0.5, "xanchor": "center"} if title else None, height=560,
        margin={"l": 0, "r": 0, "t": 80, "b": 0},
        legend={"x": 0.0, "y": 0.0},
        updatemenus=[{"type": "buttons", "direction": "right", "x": 0.0, "y": 1.16, "xanchor": "left", "yanchor": "top",
                      "buttons": [{"label": "linear", "method": "update", "args": [{"z": heights["linear"]}, axes(False)]},
                                  {"label": "log scale", "method": "update", "args": [{"z": heights["log"]}, axes(True)]}]}])
    for k in range(len(splits)):
        fig.update_layout({f"{'scene' if k == 0 else f'scene{k + 1}'}": {
            "xaxis": {"title": {"text": "x"}}, "yaxis": {"title": {"text": "y"}},
            "zaxis": {"title": {"text": column}}, "aspectmode": "manual", "aspectratio": {"x": 1, "y": 1, "z": 0.6}}})
    return fig


def write_plane_html(grid: pd.DataFrame, points: pd.DataFrame | None, track: pd.DataFrame | None, path,
                     title: str = "", t_marks=()) -> None:
    """The plane as one self-contained interactive HTML file (plotly.js inlined), written atomically."""
    fig = plane_figure(grid, points, track, t_marks=t_marks, title=title)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True, config={"displaylogo": False})
