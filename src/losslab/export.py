"""Loss planes for ParaView: a plane's grid as a VTK structured grid (``.vts``) and a curve on it as
poly data (``.vtp``), written with pyvista from the planes stage's Parquet tables only.

Both lie in the plane z = 0 with the plane's weight-space coordinates ``(x, y)``:

* ``.vts``: the G x G grid points; the coordinate columns ``x``, ``y``, ``ix``, ``iy`` once, and
  every other column of ``grid.parquet`` once per split as ``{split}_{column}`` point data
  (``train_loss``, ``test_accuracy``, ``train_status``, ...; text columns as string arrays);
* ``.vtp``: the plane's defining points (``points.parquet``) as vertex cells and, for a curve's
  plane, one polyline cell per curve of ``track.parquet`` (the final curve, and the curve at each
  saved epoch); every column of both tables as point data, plus ``{split}_loss``: the grid's loss
  at each point, interpolated bilinearly, so that one *Warp By Scalar* on ``train_loss`` lifts the
  surface, the points and the curve alike (docs/paraview.md).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .io import atomic_path

COORDS = ("x", "y", "ix", "iy")


def _column(values: pd.Series) -> np.ndarray:
    """A table column as a VTK-friendly array: numbers as they are, booleans as uint8, the rest as text."""
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy().astype(np.uint8)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    return values.astype(str).to_numpy()


def grid_point_data(grid: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Axes ``xs``, ``ys`` and the point data of a grid table, in VTK order (x fastest)."""
    splits = [s for s in ("train", "test") if (grid["split"] == s).any()]
    if not splits:
        raise ValueError("the grid table has no train or test rows")
    nx, ny = int(grid["ix"].max()) + 1, int(grid["iy"].max()) + 1
    data: dict[str, np.ndarray] = {}
    for k, split in enumerate(splits):
        g = grid[grid["split"] == split].sort_values(["iy", "ix"])
        if len(g) != nx * ny:
            raise ValueError(f"the {split} rows of the grid do not cover its {nx} x {ny} points once")
        if k == 0:
            xs = g["x"].to_numpy()[:nx]
            ys = g["y"].to_numpy()[::nx]
            data.update({c: _column(g[c]) for c in COORDS})
        data.update({f"{split}_{c}": _column(g[c]) for c in g.columns if c not in COORDS and c != "split"})
    return xs, ys, data


def write_grid_vts(grid: pd.DataFrame, path) -> None:
    """The grid table as a ``.vts`` structured grid (see the module doc), written atomically."""
    import pyvista as pv

    xs, ys, data = grid_point_data(grid)
    X, Y, Z = np.meshgrid(xs, ys, [0.0], indexing="ij")  # [nx, ny, 1]; pyvista orders points x fastest
    mesh = pv.StructuredGrid(X, Y, Z)
    for name, values in data.items():
        mesh.point_data[name] = values
    _save(mesh, path)


def overlay_table(points: pd.DataFrame | None, track: pd.DataFrame | None) -> pd.DataFrame:
    """The plane's defining points (``source`` = ``point``) and its curve track in one table, the
    columns of both (missing values: NaN, ``""``, ``False``), in the order of the ``.vtp`` points."""
    parts = []
    if points is not None and len(points):
        parts.append(points.assign(source="point", epoch=-2, t=np.nan, residual=np.nan, mark=False))
    if track is not None and len(track):
        parts.append(track.sort_values(["epoch", "t"], kind="stable").assign(point=""))
    if not parts:
        raise ValueError("nothing to export: no points and no curve track")
    df = pd.concat(parts, ignore_index=True)
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].fillna("")
    df["mark"] = df["mark"].fillna(False).astype(bool)
    return df


def write_overlay_vtp(points: pd.DataFrame | None, track: pd.DataFrame | None, path,
                      grid: pd.DataFrame | None = None) -> None:
    """A plane's defining points (vertex cells) and its curves (one polyline per ``source`` and
    ``epoch`` of the track) as ``.vtp`` poly data in z = 0: every column of both tables as point
    data (:func:`overlay_table`), and with ``grid`` its ``{split}_loss`` interpolated at each point
    (see the module doc)."""
    import pyvista as pv

    from .figures.interactive import grid_value_at
    from .figures.planes import grid_arrays

    df = overlay_table(points, track)
    xyz = np.c_[df["x"].to_numpy(float), df["y"].to_numpy(float), np.zeros(len(df))]
    verts = [np.r_[1, i] for i in df.index[df["source"] == "point"]]
    lines = [np.r_[len(g), g.index.to_numpy()] for _, g in df[df["source"] != "point"].groupby(["source", "epoch"],
                                                                                               sort=False)]
    mesh = pv.PolyData(xyz, verts=np.concatenate(verts) if verts else None,
                       lines=np.concatenate(lines) if lines else None)
    for c in df.columns:
        mesh.point_data[c] = _column(df[c])
    if grid is not None:
        for split in ("train", "test"):
            if (grid["split"] == split).any():
                xs, ys, z = grid_arrays(grid, split)
                mesh.point_data[f"{split}_loss"] = grid_value_at(xs, ys, z, df["x"], df["y"])
    _save(mesh, path)


def _save(mesh, path) -> None:
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + "." + str(path).rsplit(".", 1)[-1])  # pyvista picks the writer by suffix
        try:
            mesh.save(str(named), binary=True)
            named.replace(tmp)
        finally:
            named.unlink(missing_ok=True)
