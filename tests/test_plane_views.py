"""The other views of a plane, from its Parquet tables: the self-contained interactive HTML (plotly)
holds the grid's values and draws a surface in a real browser; the ParaView files (.vts grid, .vtp
points and curves) read back with pyvista equal the tables."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslab import io
from losslab.export import write_grid_vts, write_overlay_vtp
from losslab.figures.interactive import grid_value_at, write_plane_html
from losslab.figures.planes import grid_arrays

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _tables(nx=6, ny=5):
    xs, ys = np.linspace(-1.0, 2.0, nx), np.linspace(-0.5, 1.5, ny)
    rows = []
    for split, shift in (("train", 0.0), ("test", 0.3)):
        for iy, y in enumerate(ys):
            for ix, x in enumerate(xs):
                rows.append({"x": x, "y": y, "split": split, "loss": 0.1 + (x - 0.5) ** 2 + y ** 2 + shift,
                             "accuracy": 1.0 / (1 + ix + iy), "status": "ok", "bn_policy": "none", "ix": ix, "iy": iy,
                             "tile": f"{ix // 3}_{iy // 3}", "resolution": nx, "n_train": 100, "n_test": 50,
                             "plane": "p"})
    grid = pd.DataFrame(rows)
    points = pd.DataFrame({"plane": "p", "kind": "curve", "normalization": "", "point": ["w1", "w2", "bend"],
                           "x": [0.0, 1.5, 0.7], "y": [0.0, 0.0, 1.0]})
    t = np.linspace(0, 1, 11)
    track = pd.concat([pd.DataFrame({"source": src, "epoch": ep, "t": t, "x": 1.5 * t, "y": h * 4 * t * (1 - t),
                                     "residual": 0.0, "mark": np.isclose(t, 0.5), "plane": "p"})
                       for src, ep, h in (("final", -1, 1.0), ("epoch", 0, 0.0), ("epoch", 1, 0.6))],
                      ignore_index=True)
    return grid, points, track


def figure_json(path) -> tuple[list, dict]:
    """The data and layout that the HTML file passes to Plotly.newPlot."""
    text = Path(path).read_text()
    start = text.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    dec = json.JSONDecoder()
    pos = start
    values = []
    for _ in range(3):  # the div id, the data, the layout
        while text[pos] in " \n\t,":
            pos += 1
        value, pos = dec.raw_decode(text, pos)
        values.append(value)
    return values[1], values[2]


def _nan(v):
    return np.array([np.nan if u is None else u for u in v], dtype=float)


def test_html_is_self_contained_and_holds_the_grid_values(tmp_path):
    grid, points, track = _tables()
    path = tmp_path / "plane.html"
    write_plane_html(grid, points, track, path, title="a plane")
    text = path.read_text()
    assert "<script src=" not in text.replace('<script src="data:', "") and path.stat().st_size > 1_000_000
    data, layout = figure_json(path)
    surfaces = [d for d in data if d["type"] == "surface"]
    assert [s["name"] for s in surfaces] == ["train loss", "test loss"]
    for s, split in zip(surfaces, ("train", "test")):
        xs, ys, z = grid_arrays(grid, split)
        assert np.allclose(s["x"], xs) and np.allclose(s["y"], ys)
        assert np.allclose(np.array(s["z"], dtype=float), z)  # z[iy][ix], the grid's loss
        assert s["contours"]["z"]["show"]
    assert {d["type"] for d in data} == {"surface", "scatter3d"}
    curve = [d for d in data if d.get("name") == "curve"]
    assert len(curve) == 2 and np.allclose(curve[0]["x"], track[track.source == "final"].sort_values("t")["x"])
    assert any("t=0.5" in d.get("text", []) for d in data)
    # the log-scale toggle: one button per scale, heights of every trace
    (menu,) = layout["updatemenus"]
    linear, log = menu["buttons"]
    assert (linear["label"], log["label"]) == ("linear", "log scale")
    assert np.allclose(np.array(log["args"][0]["z"][0], dtype=float), np.log10(grid_arrays(grid, "train")[2]))
    assert np.allclose(np.array(linear["args"][0]["z"][0], dtype=float), grid_arrays(grid, "train")[2])
    assert log["args"][1]["scene.zaxis.title.text"] == "log10 loss"


def test_non_finite_losses_become_gaps(tmp_path):
    grid, points, _ = _tables(4, 3)
    grid.loc[(grid.split == "train") & (grid.ix == 1) & (grid.iy == 2), "loss"] = np.nan
    write_plane_html(grid, points, None, tmp_path / "p.html")
    data, _ = figure_json(tmp_path / "p.html")
    z = data[0]["z"]
    assert z[2][1] is None and sum(v is None for row in z for v in row) == 1


def test_vtk_files_read_back_equal_the_tables(tmp_path):
    pv = pytest.importorskip("pyvista")
    grid, points, track = _tables()
    write_grid_vts(grid, tmp_path / "p.vts")
    write_overlay_vtp(points, track, tmp_path / "p.vtp", grid)
    _check_vtk(pv, grid, points, track, tmp_path / "p.vts", tmp_path / "p.vtp")


def _check_vtk(pv, grid, points, track, vts, vtp):
    g = pv.read(vts)
    nx, ny = int(grid.ix.max()) + 1, int(grid.iy.max()) + 1
    assert tuple(g.dimensions) == (nx, ny, 1)
    for split in grid["split"].unique():
        rows = grid[grid.split == split].sort_values(["iy", "ix"])
        for c in grid.columns:
            if c == "split":
                continue
            name = c if c in ("x", "y", "ix", "iy") else f"{split}_{c}"
            got, want = g.point_data[name], rows[c].to_numpy()
            if pd.api.types.is_numeric_dtype(rows[c]):
                assert np.allclose(got.astype(float), want.astype(float), equal_nan=True), name
            else:
                assert list(got) == list(want.astype(str)), name
        assert np.allclose(g.points[:, 0], rows["x"]) and np.allclose(g.points[:, 1], rows["y"])
    o = pv.read(vtp)
    n_curves = 0 if track is None else track.groupby(["source", "epoch"]).ngroups
    assert o.n_verts == len(points) and o.n_lines == n_curves
    assert list(o.point_data["point"][: len(points)]) == list(points["point"])
    assert np.allclose(o.points[: len(points), :2], points[["x", "y"]].to_numpy())
    xs, ys, z = grid_arrays(grid, "train")
    assert np.allclose(o.point_data["train_loss"], grid_value_at(xs, ys, z, o.points[:, 0], o.points[:, 1]))
    if track is not None:
        tr = track.sort_values(["epoch", "t"], kind="stable")
        assert np.allclose(o.point_data["t"][len(points):], tr["t"]) and np.allclose(o.points[len(points):, 1], tr["y"])
        assert list(o.point_data["source"][len(points):]) == list(tr["source"])


def test_bilinear_heights_are_exact_at_grid_points():
    grid, _, _ = _tables()
    xs, ys, z = grid_arrays(grid, "test")
    X, Y = np.meshgrid(xs, ys)
    assert np.allclose(grid_value_at(xs, ys, z, X.ravel(), Y.ravel()), z.ravel())


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser on this machine")
def test_headless_chromium_draws_the_surface(tmp_path):
    from PIL import Image

    grid, points, track = _tables(15, 15)
    html = tmp_path / "plane.html"
    write_plane_html(grid, points, track, html)
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,700",
           "--virtual-time-budget=8000", html.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.exists(), "chromium wrote no screenshot"
    im = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    h, w, _ = im.shape
    scene = im[int(0.2 * h): int(0.8 * h), int(0.05 * w): int(0.44 * w)]  # the left scene, colour bar excluded
    colourful = (scene.max(-1) - scene.min(-1)) > 60  # viridis surface; axes, text and background are grey
    assert colourful.mean() > 0.05, f"no surface drawn ({colourful.mean():.3f} of the scene is coloured)"
    assert len(np.unique(scene.reshape(-1, 3), axis=0)) > 1000  # shaded, not flat


@pytest.mark.e2e
def test_workflow_writes_every_plane_as_html_and_vtk(tiny_run):
    pv = pytest.importorskip("pyvista")
    res = tiny_run / "results" / "digits" / "simplecnn"
    planes = sorted(p.name for p in (res / "planes").iterdir() if (p / "grid.parquet").exists())
    assert len(planes) >= 3
    for name in planes:
        for suffix in (".html", ".vts", ".vtp"):
            assert (res / "figures" / "planes" / (name + suffix)).stat().st_size > 0, name + suffix
    for name in ("three-endpoints", "curve-bezier1-default-seed0-seed1"):
        d = res / "planes" / name
        grid, points = io.read_parquet(d / "grid.parquet"), io.read_parquet(d / "points.parquet")
        track = io.read_parquet(d / "track.parquet") if (d / "track.parquet").exists() else None
        fig = res / "figures" / "planes" / name
        _check_vtk(pv, grid, points, track, fig.with_suffix(".vts"), fig.with_suffix(".vtp"))
        data, _ = figure_json(fig.with_suffix(".html"))
        assert np.allclose(np.array(data[0]["z"], dtype=float), grid_arrays(grid, "train")[2], equal_nan=True)
