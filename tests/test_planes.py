"""Loss planes: bases, the grid engine against the one-point reference, tiles, curve tracks,
renders and the animation; one end-to-end run of the planes stage through Snakemake."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY, planned_jobs, snakemake
from losslab import curves, data, flat, io, models, planes
from losslab.figures import planes as plane_render
from losslab.config import ConfigError, validate_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits_ev():
    ds = data.load_dataset("digits")
    return ds, data.eval_data(ds, 96, 80, 48, 0)


def _three(spec, ds, seeds=(0, 1, 2)):
    vecs = []
    for s in seeds:
        torch.manual_seed(s)
        vecs.append(flat.FlatModel(models.build_model(spec, ds.in_shape, ds.num_outputs)).flatten().clone())
    torch.manual_seed(0)
    return flat.FlatModel(models.build_model(spec, ds.in_shape, ds.num_outputs)), vecs


def _ref(fm, vec, ev, task):
    r = flat.evaluate_point(fm, vec, ev, task)
    return {f"{s}_{k}": r[s][k] for s in ("train", "test") for k in ("loss", "accuracy")}


# ----- planes -------------------------------------------------------------------------------
def test_plane_from_points_basis_and_coordinates():
    g = torch.Generator().manual_seed(0)
    w1, w2, w3 = (torch.randn(50, generator=g) for _ in range(3))
    pl = planes.plane_from_points(w1, w2, w3, names=("a", "b", "c"))
    assert abs(float(pl.e1 @ pl.e1) - 1) < 1e-5 and abs(float(pl.e2 @ pl.e2) - 1) < 1e-5
    assert abs(float(pl.e1 @ pl.e2)) < 1e-5
    assert pl.points["a"] == (0.0, 0.0)
    assert pl.points["b"][1] == 0.0 and pl.points["b"][0] == pytest.approx(float((w2 - w1).norm()), rel=1e-6)
    for name, w in zip("abc", (w1, w2, w3)):
        assert torch.allclose(pl.at(torch.tensor(pl.points[name])), w, atol=1e-5)
    xy, res = pl.project(torch.stack([w1, w2, w3, w1 + 0.3 * (w2 - w1)]))
    assert np.allclose(xy[:3], np.array([pl.points[n] for n in "abc"]), atol=1e-5)
    assert res.max() < 1e-5
    off = w1 + 2.0 * torch.nn.functional.normalize(torch.randn(50, generator=g) - 0, dim=0)
    _, r = pl.project(off)
    assert r[0] > 0.1  # a generic vector is off the plane


def test_plane_from_points_rejects_degenerate():
    w = torch.randn(10)
    with pytest.raises(ValueError, match="coincide"):
        planes.plane_from_points(w, w, torch.randn(10))
    with pytest.raises(ValueError, match="collinear"):
        planes.plane_from_points(w, 2 * w, 3 * w)
    with pytest.raises(ValueError, match="same length|one length"):
        planes.plane_from_points(w, torch.randn(11), w)


def test_random_plane_normalisations(digits_ev):
    ds, _ = digits_ev
    fm, (w, *_) = _three({"name": "simplecnn"}, ds)
    pl = planes.random_plane(w, 3, "norm")
    assert float(pl.e1.norm()) == pytest.approx(float(w.norm()), rel=1e-5)
    assert float(pl.e2.norm()) == pytest.approx(float(w.norm()), rel=1e-5)
    assert abs(float(pl.e1 @ pl.e2)) < 1e-3 * float(w.norm()) ** 2
    assert torch.equal(planes.random_plane(w, 3, "norm").e1, pl.e1)  # seeded
    pf = planes.random_plane(w, 3, "filter", layout=fm)
    d, ww = fm.params(pf.e1), fm.params(w)
    for name in fm.names:
        if d[name].ndim >= 2:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), ww[name].flatten(1).norm(dim=1), rtol=1e-4)
        else:
            assert d[name].abs().max() == 0  # biases ignored (Li et al.)
    pu = planes.random_plane(w, 3, "unit")  # coordinates are weight-space distances
    assert float(pu.e1.norm()) == pytest.approx(1.0, rel=1e-5) and float(pu.e2.norm()) == pytest.approx(1.0, rel=1e-5)
    assert abs(float(pu.e1 @ pu.e2)) < 1e-5
    with pytest.raises(ValueError, match="normalization"):
        planes.random_plane(w, 0, "bogus")


def test_all_nan_grid_renders_as_diverged(tmp_path, monkeypatch):
    grid = pd.DataFrame([{"ix": i, "iy": j, "x": float(i), "y": float(j), "split": s, "loss": float("nan")}
                         for i in range(3) for j in range(3) for s in ("train", "test")])
    pts = pd.DataFrame([{"plane": "p", "kind": "random", "normalization": "unit", "point": "seed 0", "x": 1.0, "y": 1.0}])
    titles = []
    real_save = plane_render.save
    monkeypatch.setattr(plane_render, "save", lambda fig, *p: (titles.extend(a.get_title() for a in fig.axes), real_save(fig, *p)))
    plane_render.plot_plane(grid, pts, None, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "train loss: no finite value (diverged)" in titles


def test_grid_and_tiles():
    assert planes.tile_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    with pytest.raises(ValueError, match="tiles_per_side"):
        planes.tile_ranges(4, 5)
    with pytest.raises(ValueError, match="resolution"):
        planes.grid_axes((0, 1, 0, 1), 1)
    xs, ys = np.arange(5.0), np.arange(5.0) + 10
    seen = set()
    for i in range(2):
        for j in range(2):
            x, y, ix, iy = planes.tile_coords(xs, ys, 2, i, j)
            assert np.array_equal(x, xs[ix]) and np.array_equal(y, ys[iy])
            seen |= set(zip(ix.tolist(), iy.tolist()))
    assert seen == {(a, b) for a in range(5) for b in range(5)}


# ----- engine vs. the one-point reference ------------------------------------------------------
class _ScaledConv(torch.nn.Conv2d):
    """A Conv2d subclass with its own forward (weight standardisation): not an exact Conv2d, so
    neither lowered nor used for the first-layer trick."""

    def forward(self, x):
        w = self.weight / self.weight.flatten(1).norm(dim=1)[:, None, None, None]
        return torch.nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


class _Odd(torch.nn.Module):
    """A model the engine cannot lower or batch: a convolution subclass, a circularly padded
    convolution, a parameter used directly, and a data-dependent branch vmap cannot trace."""

    def __init__(self, in_shape, num_outputs):
        super().__init__()
        c, h, w = in_shape
        self.conv = _ScaledConv(c, 4, 3, padding=1)
        self.circ = torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular")
        self.gain = torch.nn.Parameter(torch.linspace(0.5, 1.5, 4))
        self.head = torch.nn.Linear(4 * h * w, num_outputs)

    def forward(self, x):
        h = torch.tanh(self.conv(x)) * self.gain[:, None, None]
        if bool(h.abs().amax() > 1e6):  # never true; vmap cannot branch on data
            h = h / 1e6
        return self.head(self.circ(h).relu().flatten(1))


CASES = {  # name: (dataset, model spec or a builder of an unregistered model)
    "simplecnn": ("digits", {"name": "simplecnn", "width": 0.5}),
    "simplecnn-bn": ("digits", {"name": "simplecnn", "width": 0.5, "batchnorm": True}),
    "resnet20-bn": ("digits", {"name": "resnet20", "width": 0.25, "batchnorm": True, "options": {"blocks": 1}}),
    "resnet20-bn-noskip": ("digits", {"name": "resnet20", "width": 0.25, "batchnorm": True, "options": {"skip": False, "blocks": 1}}),
    "mlp-classification": ("digits", {"name": "mlp", "options": {"hidden": 16}}),
    "mlp-regression": ("regression1d", {"name": "mlp", "options": {"hidden": 16}}),
    "vgg_small": ("digits", {"name": "vgg_small", "width": 0.25}),
    "transformer": ("digits", {"name": "transformer", "options": {"dim": 8, "heads": 2, "depth": 1}}),
    "custom": ("digits", _Odd),
}
PATHS = {  # engine paths: every lever forced on or off, and the calibrated choice
    "loop-lowered-first": dict(mode="loop", lower="on", first_layer="on", data_chunk=50),
    "loop-plain": dict(mode="loop", lower="off", first_layer="off"),
    "vmap-lowered-first": dict(mode="vmap", lower="on", first_layer="on", point_chunk=3, data_chunk=64),
    "vmap-plain": dict(mode="vmap", lower="off", first_layer="off", point_chunk=4),
    "auto": dict(),
}


@pytest.fixture(scope="module")
def datasets():
    out = {}
    for name, n in (("digits", (96, 80, 48)), ("regression1d", (120, 90, 32))):
        ds = data.load_dataset(name)
        out[name] = (ds, data.eval_data(ds, *n, 0))
    return out


def _case(name, datasets):
    dname, spec = CASES[name]
    ds, ev = datasets[dname]
    if callable(spec):
        vecs = []
        for s in (0, 1, 2, 0):
            torch.manual_seed(s)
            vecs.append(flat.FlatModel(spec(ds.in_shape, ds.num_outputs)).flatten().clone())
        fm, ws = flat.FlatModel(spec(ds.in_shape, ds.num_outputs)), vecs[:3]
    else:
        fm, ws = _three(spec, ds)
    return ds, ev, fm, planes.plane_from_points(*ws)


def _reference(fm, pl, coords, ev, task):
    return [planes.reference_point(fm, pl.at(torch.tensor(xy, dtype=torch.float32)), ev, task) for xy in coords]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("case", list(CASES))
def test_engine_paths_equal_one_point_reference(datasets, case, path):
    ds, ev, fm, pl = _case(case, datasets)
    opts = dict(PATHS[path], compile="off")
    if case in ("custom", "mlp-classification", "mlp-regression") and opts.get("first_layer") == "on":
        # a Conv2d subclass, or a Linear fed the flattened input: no first-layer trick
        with pytest.raises(ValueError, match="first_layer: on"):
            planes.GridEngine(fm, pl, ev, ds.task, planes.EngineOptions(**opts))
        opts["first_layer"] = "auto"
    coords = np.random.default_rng(1).uniform(-0.5, 1.5, (7, 2)) * [[pl.points["w2"][0], pl.points["w3"][1]]]
    eng = planes.GridEngine(fm, pl, ev, ds.task, planes.EngineOptions(**opts))
    if case == "custom" and opts.get("mode") == "vmap":
        with pytest.raises(ValueError, match="vmap cannot run this model"):
            eng.evaluate(coords)
        return
    res = eng.evaluate(coords)
    d = eng.describe()
    ref = _reference(fm, pl, coords, ev, ds.task)
    for k in range(len(coords)):
        for key, v in ref[k].items():
            if ds.task == "regression" and key.endswith("accuracy"):
                assert np.isnan(res[key][k])
            else:
                assert res[key][k] == pytest.approx(v, abs=1e-5), (key, k, d)
    # the path that ran is the one asked for
    if "mode" in opts:
        assert d["engine_mode"] == opts["mode"]
        assert d["point_chunk"] == opts.get("point_chunk", 1)
    else:
        assert d["calibrated"] and d["engine_mode"] in ("loop", "vmap") and d["data_chunk"] >= 1
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in fm.module.modules())
    if opts.get("lower") == "on":
        assert d["channels_last"] == has_conv
        # 8x8 inputs: every plain conv is small (the transformer's strided patch embedding would cost > 8x its FLOPs dense)
        assert bool(d["dense_layers"]) == (has_conv and case not in ("custom", "transformer"))
    if opts.get("lower") == "off":
        assert not d["channels_last"] and not d["dense_layers"]
    if opts.get("first_layer") in ("on", "off"):
        assert d["first_layer_trick"] == (opts["first_layer"] == "on")
    if case == "custom":
        assert not d["dense_layers"] and not d["first_layer_trick"]
        if "mode" not in opts:  # auto: vmap was tried, failed, and the loop took over
            assert d["engine_mode"] == "loop" and "vmap_error" in d


def test_custom_model_in_vmap_mode_is_a_clear_error(datasets):
    ds, ev, fm, pl = _case("custom", datasets)
    eng = planes.GridEngine(fm, pl, ev, ds.task, planes.EngineOptions(mode="vmap", point_chunk=2))
    with pytest.raises(ValueError, match="vmap cannot run this model"):
        eng.evaluate(np.zeros((3, 2)))


@pytest.mark.parametrize("conv", [
    dict(cls=torch.nn.Conv2d, args=(3, 4, 3), kw=dict(padding=1)),
    dict(cls=torch.nn.Conv2d, args=(4, 6, (3, 2)), kw=dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
    dict(cls=torch.nn.Conv2d, args=(2, 3, 1), kw=dict(bias=False)),
    dict(cls=torch.nn.Conv1d, args=(3, 5, 3), kw=dict(stride=2, padding=2)),
])
def test_dense_convolution_equals_the_convolution(conv):
    from losslab.engine import _DenseConv

    torch.manual_seed(0)
    layer = conv["cls"](*conv["args"], **conv["kw"])
    x = torch.randn(5, conv["args"][0], *((7, 6) if conv["cls"] is torch.nn.Conv2d else (9,)))
    dense = _DenseConv(layer, tuple(x.shape[1:]))
    with torch.no_grad():
        ws = torch.stack([layer.weight, 2 * layer.weight])  # batched weights: two points
        bs = None if layer.bias is None else torch.stack([layer.bias, -layer.bias])
        dense.dense, dense.dense_bias = (t[1] for t in dense.expand(ws, bs))
        expect = torch.nn.functional.conv2d if x.dim() == 4 else torch.nn.functional.conv1d
        ref = expect(x, 2 * layer.weight, None if bs is None else -layer.bias, layer.stride, layer.padding,
                     layer.dilation, layer.groups)
        assert torch.allclose(dense(x), ref, atol=1e-5)
    assert dense(x).shape == ref.shape
    # every weight is used, and each (input, output) pair by at most one weight
    assert set(dense.index.unique().tolist()) == set(range(layer.weight.numel() + 1))


def test_engine_evaluates_flat_vectors_on_chosen_splits(datasets):
    from losslab.engine import Evaluator

    ds, ev, fm, pl = _case("simplecnn-bn", datasets)
    vecs = pl.at(torch.tensor([[0.1, 0.2], [1.0, -0.5], [2.0, 1.0]]))
    eng = Evaluator(fm, ev, ds.task, planes.EngineOptions(compile="off"))
    res = eng.evaluate_vectors(vecs, ("test",))
    assert set(res) == {"test"} and res["test"]["loss"].dtype == torch.float64
    n = ev.test_x.shape[0]
    for k, v in enumerate(vecs):
        ref = planes.reference_point(fm, v, ev, ds.task)
        assert float(res["test"]["loss"][k]) / n == pytest.approx(ref["test_loss"], abs=1e-5)
        assert float(res["test"]["correct"][k]) == pytest.approx(ref["test_accuracy"] * n, abs=1e-3)
    with pytest.raises(ValueError, match="shape"):
        eng.evaluate_vectors(vecs[:, :10])
    with pytest.raises(ValueError, match="no basis"):
        eng.evaluate_coefs([[0.0, 0.0]])
    with pytest.raises(ValueError, match="unknown split"):
        eng.evaluate_vectors(vecs, ("val",))


def test_compiled_engine_equals_reference(digits_ev):
    """compile: auto compiles a long enough job (threshold 0 s here), after its calibration."""
    ds, ev = digits_ev
    fm, ws = _three({"name": "simplecnn"}, ds)
    pl = planes.plane_from_points(*ws)
    eng = planes.GridEngine(fm, pl, ev, "classification", planes.EngineOptions(compile="auto", compile_min_seconds=0))
    assert not eng.describe()["compiled"]
    coords = np.array([[0.5, 0.5], [3.0, -1.0], [-1.0, 2.0]])
    df = planes.evaluate_grid(fm, pl, coords[:, 0], coords[:, 1], ev, "classification", engine=eng)
    assert eng.describe()["compiled"]
    train = df[df["split"] == "train"].reset_index(drop=True)
    for k, xy in enumerate(coords):
        ref = _ref(fm, pl.at(torch.tensor(xy)), ev, "classification")
        assert train.loc[k, "loss"] == pytest.approx(ref["train_loss"], abs=1e-5)


def test_failed_compilation_falls_back_to_the_eager_forward(digits_ev, monkeypatch):
    ds, ev = digits_ev
    fm, ws = _three({"name": "simplecnn"}, ds)
    pl = planes.plane_from_points(*ws)

    def broken(fn, **kw):
        def run(*a):
            raise RuntimeError("backend compiler failed")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    eng = planes.GridEngine(fm, pl, ev, "classification", planes.EngineOptions(compile="on", data_chunk=64))
    eng.plan(2)
    res = eng.evaluate([[0.5, 0.5], [1.0, 2.0]])
    assert not eng.describe()["compiled"]
    ref = _ref(fm, pl.at(torch.tensor([1.0, 2.0])), ev, "classification")
    assert res["test_loss"][1] == pytest.approx(ref["test_loss"], abs=1e-5)


def test_engine_memory_budget_bounds_chunks():
    ds = data.load_dataset("regression1d")
    ev = data.eval_data(ds, 1000, 1000, 32, 0)
    fm, ws = _three({"name": "mlp", "options": {"hidden": 16}}, ds)
    pl = planes.plane_from_points(*ws)
    coords = np.random.default_rng(0).uniform(-1, 3, (40, 2))
    big = planes.GridEngine(fm, pl, ev, "regression", planes.EngineOptions(mode="vmap"))
    small = planes.GridEngine(fm, pl, ev, "regression", planes.EngineOptions(mode="vmap", memory_budget_mb=0.05))
    a, b = big.evaluate(coords), small.evaluate(coords)
    assert small.data_chunk * small.point_chunk < big.data_chunk * big.point_chunk
    assert small.data_chunk < ev.train_x.shape[0] + ev.test_x.shape[0]
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-6, atol=1e-6)


def test_engine_options_are_checked():
    with pytest.raises(ValueError, match="mode = 'grid'; allowed: auto, loop, vmap"):
        planes.EngineOptions(mode="grid")
    with pytest.raises(ValueError, match="lower"):
        planes.EngineOptions(lower="maybe")
    with pytest.raises(ValueError, match="point_chunk"):
        planes.EngineOptions(point_chunk=-1)
    with pytest.raises(ValueError, match="unknown engine option"):
        planes.EngineOptions.from_dict({"modee": "loop"})
    assert planes.EngineOptions.from_dict({"mode": "loop"}, 64).memory_budget_mb == 64


def test_defining_points_evaluate_to_their_own_losses(digits_ev):
    ds, ev = digits_ev
    fm, ws = _three({"name": "simplecnn", "batchnorm": True}, ds)
    pl = planes.plane_from_points(*ws, names=("a", "b", "c"))
    xy = np.array([pl.points[n] for n in "abc"])
    df = planes.evaluate_grid(fm, pl, xy[:, 0], xy[:, 1], ev, "classification")
    assert set(df.columns) >= {"x", "y", "split", "loss", "accuracy", "bn_policy", "status"}
    assert df["bn_policy"].str.contains("recomputed").all()
    for k, w in enumerate(ws):
        ref = _ref(fm, w, ev, "classification")
        got = df[(df["split"] == "train")].iloc[k]
        assert got["loss"] == pytest.approx(ref["train_loss"], abs=1e-5)
        assert got["accuracy"] == pytest.approx(ref["train_accuracy"], abs=1e-6)


def test_tiles_gathered_equal_untiled(digits_ev):
    ds, ev = digits_ev
    fm, ws = _three({"name": "simplecnn"}, ds)
    pl = planes.plane_from_points(*ws)
    xs, ys = planes.grid_axes(planes.grid_bounds(pl, 0.1), 5)
    X, Y, ix, iy = planes.tile_coords(xs, ys, 1, 0, 0)
    whole = planes.evaluate_grid(fm, pl, X, Y, ev, "classification").assign(ix=np.tile(ix, 2), iy=np.tile(iy, 2))
    parts = []
    for i in range(3):
        for j in range(3):
            X, Y, ix, iy = planes.tile_coords(xs, ys, 3, i, j)
            parts.append(planes.evaluate_grid(fm, pl, X, Y, ev, "classification").assign(ix=np.tile(ix, 2), iy=np.tile(iy, 2)))
    tiled = pd.concat(parts)
    key = ["split", "iy", "ix"]
    a = whole.sort_values(key).reset_index(drop=True)
    b = tiled.sort_values(key).reset_index(drop=True)
    assert len(b) == 2 * 25
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-6)


# ----- curves: plane, track, animation ---------------------------------------------------------
def _write_curve(path, control, kind="bezier"):
    io.save_tensors({"format": "losslab.curve/1", "kind": kind, "control": control, "meta": {"test": True}}, path)


def test_curve_plane_track_and_animation(tmp_path):
    g = torch.Generator().manual_seed(1)
    D = 40
    w1, w2 = torch.randn(D, generator=g), torch.randn(D, generator=g)
    bend = 0.5 * (w1 + w2) + torch.randn(D, generator=g)
    final = torch.stack([w1, bend, w2])
    _write_curve(tmp_path / "curve.pt", final)
    snaps = []
    start = 0.5 * (w1 + w2) + 0.7 * torch.randn(D, generator=g)
    for e in range(4):  # the bend moves from off the final plane to its final place
        snaps.append(torch.stack([w1, start + (bend - start) * e / 3, w2]))
    epochs = tmp_path / "epochs.pt"
    curves.save_curve_epochs("bezier", snaps, {"test": True}, epochs)
    pl = planes.curve_plane(tmp_path / "curve.pt")
    assert pl.kind == "curve" and pl.points["w1"] == (0.0, 0.0) and pl.points["w2"][1] == 0.0
    few = planes.curve_track(pl, str(tmp_path / "curve.pt"), epochs, max_frames=3)
    assert sorted(few.loc[few["source"] == "epoch", "epoch"].unique()) == [0, 2, 3]  # first and last kept
    track = planes.curve_track(pl, str(tmp_path / "curve.pt"), epochs, t_marks=[0.0, 0.5, 1.0])
    fin = track[track["source"] == "final"]
    assert fin["residual"].max() < 1e-4  # a quadratic Bezier curve lies in its own plane
    assert set(track.loc[track["source"] == "epoch", "epoch"]) == {0, 1, 2, 3}
    first = track[(track["source"] == "epoch") & (track["epoch"] == 0)]
    assert first["residual"].max() > 0.1  # the untrained bend is off the plane
    ends = fin[fin["t"].isin([0.0, 1.0])].sort_values("t")
    assert np.allclose(ends[["x", "y"]].to_numpy(), [pl.points["w1"], pl.points["w2"]], atol=1e-4)
    assert fin["mark"].sum() == 3

    # a synthetic gathered grid and points table, rendered from Parquet-shaped frames only
    xs, ys = planes.grid_axes(planes.grid_bounds(pl, 0.2), 6)
    X, Y, ix, iy = planes.tile_coords(xs, ys, 1, 0, 0)
    loss = 0.05 + np.hypot(X - pl.points["w1"][0], Y) * np.hypot(X - pl.points["w2"][0], Y)
    grid = pd.concat([pd.DataFrame({"x": X, "y": Y, "ix": ix, "iy": iy, "split": s, "loss": loss}) for s in ("train", "test")])
    pts = pd.DataFrame([{"point": n, "x": v[0], "y": v[1], "kind": "curve"} for n, v in pl.points.items()])
    plane_render.plot_plane(grid, pts, track, str(tmp_path / "p.png"), str(tmp_path / "p.pdf"), levels=8)
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "p.pdf").stat().st_size > 1000
    n = plane_render.animate_curve(grid, pts, track, str(tmp_path / "a.gif"), levels=8, fps=5)
    from PIL import Image

    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == n == 4


def test_curve_checkpoint_errors(tmp_path):
    io.save_tensors({"format": "something-else"}, tmp_path / "bad.pt")
    with pytest.raises(io.ArtifactError, match="not a losslab curve"):
        curves.load_curve(tmp_path / "bad.pt")
    with pytest.raises(io.ArtifactError, match="does not exist"):
        curves.load_curve(tmp_path / "missing.pt")
    with pytest.raises(io.ArtifactError, match="per-epoch curve file"):
        curves.load_curve_epochs(tmp_path / "bad.pt")
    io.save_tensors({"format": "losslab.curve/1", "kind": "bezier", "control": torch.zeros(2, 3), "meta": {}},
                    tmp_path / "short.pt")
    with pytest.raises(io.ArtifactError, match="expected \\[k \\+ 2, D\\]"):
        curves.load_curve(tmp_path / "short.pt")


def test_plane_checkpoint_roundtrip(tmp_path):
    pl = planes.plane_from_points(torch.zeros(5), torch.ones(5), torch.arange(5.0))
    pl.meta["bounds"] = [0.0, 1.0, 0.0, 1.0]
    planes.save_plane(pl, tmp_path / "plane.pt")
    back = planes.load_plane(tmp_path / "plane.pt")
    assert torch.equal(back.e2, pl.e2) and back.points == pl.points and back.meta["bounds"] == [0.0, 1.0, 0.0, 1.0]


# ----- config ---------------------------------------------------------------------------------
def _config(**planes_cfg):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["planes"].update(planes_cfg)
    return cfg


def test_config_schema_bounds():
    validate_config(_config())
    with pytest.raises(ConfigError, match="planes.resolution"):
        validate_config(_config(resolution=1))
    with pytest.raises(ConfigError, match="planes.random.normalization"):
        validate_config(_config(random={"normalization": "spherical"}))
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(_config(colour="red"))


def test_dry_run_1000x1000_is_a_sane_number_of_jobs(tmp_path):
    cfg = tmp_path / "big.yaml"
    big = yaml.safe_load(TINY.read_text())
    planes = planned_jobs(snakemake(tmp_path, "-n"))["plane_gather"]  # the tiled planes, one gather each
    assert planes >= 2
    big["planes"] = {"resolution": 1000, "tiles_per_side": 20}
    # tunnel slices at their own resolution, in tiles of the same size (50 x 50): G = 60 is 2 x 2 tiles
    big["tunnels"] = dict(big.get("tunnels", {}), slices={"enabled": True, "resolution": 60})
    cfg.write_text(yaml.safe_dump(big))
    proc = snakemake(tmp_path, "-n", configfile=cfg)
    jobs = planned_jobs(proc)
    slices = jobs["plane_gather"] - planes  # one slice per swept setting
    assert slices >= 1 and "plane_single" not in jobs
    assert jobs["plane_tile"] == planes * 400 + slices * 4  # 20 x 20 tiles of 50 x 50 points per plane
    assert jobs["plot_plane"] == planes + slices
    assert sum(jobs.values()) < planes * 410 + slices * 10 + 250  # tiles dominate; nothing else scales with G


# ----- end to end ---------------------------------------------------------------------------------
@pytest.mark.e2e
def test_planes_stage_end_to_end(tiny_copy):
    work, res = tiny_copy, "results/digits/simplecnn"
    targets = [f"{res}/figures/planes/three-endpoints.png", f"{res}/figures/planes/radial-seed0.png"]
    for t in targets:
        assert (work / t).stat().st_size > 5000
        assert (work / t.replace(".png", ".pdf")).exists()
    cfg = yaml.safe_load(TINY.read_text())
    G = cfg["planes"]["resolution"]
    grid = io.read_parquet(work / res / "planes/three-endpoints/grid.parquet")
    assert len(grid) == 2 * G * G and grid["loss"].notna().all()
    assert {"dataset", "model", "plane", "x", "y", "ix", "iy", "split", "loss", "accuracy", "bn_policy"} <= set(grid.columns)
    pts = io.read_parquet(work / res / "planes/three-endpoints/points.parquet")
    assert list(pts["point"]) == ["seed 0", "seed 1", "seed 2"]
    # the grid's corners enclose the defining points (margins)
    assert grid["x"].min() < pts["x"].min() and grid["x"].max() > pts["x"].max()

    # the curve's plane: the track of every saved epoch, and one animation frame per epoch
    curve = f"{res}/planes/curve-bezier1-default-seed0-seed1"
    track = io.read_parquet(work / curve / "track.parquet")
    epochs = track[track["source"] == "epoch"]
    assert sorted(epochs["epoch"].unique()) == list(range(cfg["curves"]["epochs"] + 1))
    assert track.loc[track["source"] == "final", "residual"].abs().max() < 1e-6  # a quadratic Bezier lies in its plane
    gif = work / f"{res}/figures/planes/curve-bezier1-default-seed0-seed1-training.gif"
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == cfg["curves"]["epochs"] + 1
    # the 1-D regression curve's plane (blog Figure 7, right)
    assert (work / "results/regression1d/mlp/figures/planes/curve-bezier1-default-seed0-seed1.png").stat().st_size > 5000

    # a run killed before the gather (so no grid and no figure yet) recomputes only missing tiles
    for f in ("planes/three-endpoints/tiles/tile1_0.parquet", "planes/three-endpoints/grid.parquet",
              "figures/planes/three-endpoints.png", "figures/planes/three-endpoints.pdf"):
        (work / res / f).unlink()
    jobs = planned_jobs(snakemake(work, "-n", "--nolock", *targets))
    assert jobs.get("plane_tile") == 1 and jobs.get("plane_gather") == 1 and jobs.get("plot_plane") == 1, jobs
    assert "train_endpoint" not in jobs and "plane_basis" not in jobs
