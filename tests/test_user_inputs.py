"""The researcher's own model, data and checkpoints through real Snakemake runs on the tiny scale:
a factory from a file and from a package, a torchvision model; .npz, .pt, Parquet, an image
folder and a dataset function; external checkpoints in .pt and .safetensors."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, dry_run_jobs, planned_jobs, snakemake, workflow_copy
from losslab import io

pytestmark = pytest.mark.e2e

TINY_USER = {
    "evaluation": {"train_size": 60, "test_size": 40, "bn_size": 32},
    "compute": {"gpus_per_job": 0, "device": "cpu"},
    "endpoints": {"seeds": [], "checkpoint_every": 0, "train": {"epochs": 2, "batch_size": 16}},
    "curves": {"kinds": ["bezier"], "pairs": [[0, 1]], "epochs": 2, "points": 5, "checkpoint_every": 0,
               "regression": {"enabled": False}},
    "planes": {"resolution": 3, "tiles_per_side": 1, "endpoints": {"enabled": False}, "random": {"enabled": False}},
    "connectors": {"enabled": False}, "tunnels": {"enabled": False}, "swa": {"enabled": False},
    "wedge": {"enabled": False}, "align": {"enabled": False}, "ensembles": {"enabled": False},
    "spectra": {"enabled": False},
}


def _write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(work, *layers, targets=()):
    files = [_write(work / f"layer{i}.yaml", layer) if isinstance(layer, dict) else layer
             for i, layer in enumerate(layers)]
    return snakemake(work, "--configfile", *map(str, files), *(["--", *targets] if targets else []), configfile=None)


def _check_curve_and_plane(work, dataset, model, setting, plane=True):
    base = work / "results" / dataset / model
    curve = base / f"curves/bezier1/{setting}/seed0-seed1"
    along = io.read_parquet(curve / "along.parquet")
    assert set(along.path) == {"curve", "line"} and along["loss"].notna().all()
    w1 = io.load_point(base / f"endpoints/{setting}/seed0/model.pt")
    assert torch.equal(io.load_tensors(curve / "curve.pt")["control"][0], w1.flat)
    if plane:
        grid = io.read_parquet(base / f"planes/curve-bezier1-{setting}-seed0-seed1/grid.parquet")
        assert len(grid) == 2 * 9 and grid["loss"].notna().all()
        assert (base / f"figures/planes/curve-bezier1-{setting}-seed0-seed1.png").stat().st_size > 3000
    return base


def test_model_file_and_npz_the_worked_example(tmp_path):
    """examples/conv1d: its model file and its .npz, endpoints trained by the workflow, with
    curves, the curve plane and the connectors."""
    subprocess.run([sys.executable, str(REPO / "examples/conv1d/make_data.py"), "--out",
                    str(tmp_path / "examples/conv1d/waves.npz"), "--n-train", "96", "--n-test", "48"], check=True,
                   capture_output=True)
    example = workflow_copy() / "examples/conv1d/config.yaml"
    connectors = {"connectors": {"enabled": True, "segments": 2, "d": 50, "steps": 5, "eval_points": 3,
                                 "short_directions": {"top_k": 3, "iters": 4, "samples": 20},
                                 "mconnector": {"resolution": 1, "eval_resolution": 2, "centre_seeds": [0, 1, 2],
                                                "centre_n": [1, 3]}}}
    _run(tmp_path, example, TINY_USER, connectors, {"endpoints": {"seeds": [0, 1, 2]}})
    base = _check_curve_and_plane(tmp_path, "waves", "conv1d", "default")
    summary = io.read_parquet(base / "endpoints/summary.parquet")
    assert len(summary) == 6 and (summary["status"] == "ok").all()
    path = io.read_parquet(base / "connectors/default/seeds0-1/path.parquet")
    assert set(path.path) == {"line", "connector"}
    assert (base / "figures/connectors/mconnector_triangle.png").stat().st_size > 3000


def _train_outside(net, x, y, seed, epochs=3):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(16):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net


def test_package_factory_pt_data_and_external_pt_checkpoints(tmp_path):
    pkg = tmp_path / "mynets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "small.py").write_text(
        "from torch import nn\n"
        "def make(input_shape, num_outputs, hidden=12):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, num_outputs))\n")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(150, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.save({"x": x, "y": y}, tmp_path / "table.pt")  # one set, split by dataset.test_fraction
    sys.path.insert(0, str(tmp_path))
    try:
        from mynets.small import make
    finally:
        sys.path.remove(str(tmp_path))
    for seed in (0, 1):
        net = _train_outside(make((6,), 3), (x - x.mean(0)) / x.std(0), y, seed)
        torch.save(torch.nn.DataParallel(net).state_dict(), tmp_path / f"outside{seed}.pt")
    layer = {"dataset": {"name": "file", "path": "table.pt", "test_fraction": 0.3},
             "model": {"name": "mynets.small:make", "options": {"hidden": 12}},
             "endpoints": {"external": {"mine": {"paths": ["outside0.pt", "outside1.pt"], "strip_prefix": "module."}}},
             "curves": {"setting": "mine"}, "planes": {"setting": "mine"}}
    _run(tmp_path, TINY_USER, layer)
    base = _check_curve_and_plane(tmp_path, "table", "mynets.small-make", "mine")
    m = io.read_parquet(base / "endpoints/mine/seed1/metrics.parquet")
    assert set(m.split) == {"train", "test"} and (m.accuracy > 0.5).all()  # the outside training is kept
    point = io.load_point(base / "endpoints/mine/seed1/model.pt")
    assert point.meta["source"].endswith("outside1.pt") and point.meta["setting"] == "mine"

    # a deleted imported checkpoint is imported again, with what depends on it, nothing else
    imported0 = base / "endpoints/mine/seed0/model.pt"
    shutil.copy2(imported0, tmp_path / "kept.pt")
    imported0.unlink()
    jobs = dry_run_jobs(snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "layer0.yaml"),
                                  str(tmp_path / "layer1.yaml"), configfile=None))
    assert [j["output"] for j in jobs if j["rule"] == "import_endpoint"] == [
        [f"results/table/mynets.small-make/endpoints/mine/seed0/{f}" for f in ("model.pt", "metrics.parquet")]]
    assert all(j["rule"] == "import_endpoint" or "Input files updated by another job" in j["reason"] for j in jobs)
    assert len(jobs) > 1  # the curve and the plane depend on it
    shutil.copy2(tmp_path / "kept.pt", imported0)  # put back as it was (modification time included)

    # a changed checkpoint reruns its import and what depends on it, nothing else
    net = _train_outside(make((6,), 3), (x - x.mean(0)) / x.std(0), y, seed=5)
    torch.save(torch.nn.DataParallel(net).state_dict(), tmp_path / "outside1.pt")
    jobs = dry_run_jobs(snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "layer0.yaml"),
                                  str(tmp_path / "layer1.yaml"), configfile=None))
    imported = [j for j in jobs if j["rule"] == "import_endpoint"]
    assert [j["output"] for j in imported] == [[f"results/table/mynets.small-make/endpoints/mine/seed1/{f}"
                                                for f in ("model.pt", "metrics.parquet")]]
    assert all(j["rule"] == "import_endpoint" or "Input files updated by another job" in j["reason"] for j in jobs)


def test_torchvision_model_image_folder_and_safetensors(tmp_path):
    from PIL import Image
    from safetensors.torch import save_file
    import torchvision

    rng = np.random.default_rng(0)
    for c, colour in enumerate(([200, 40, 40], [40, 40, 200])):
        (tmp_path / "images" / f"class{c}").mkdir(parents=True)
        for i in range(40):
            img = np.clip(np.array(colour) + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "images" / f"class{c}" / f"{i}.png")
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = torchvision.models.resnet18(num_classes=2)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / f"resnet{seed}.safetensors"))
    layer = {"dataset": {"name": "folder", "path": "images"},
             "model": {"name": "torchvision:resnet18"},
             "endpoints": {"external": {"tv": ["resnet0.safetensors", "resnet1.safetensors"]}},
             "curves": {"setting": "tv", "batch_size": 16}, "planes": {"setting": "tv"}}
    _run(tmp_path, TINY_USER, layer)
    base = _check_curve_and_plane(tmp_path, "images", "torchvision-resnet18", "tv")
    along = io.read_parquet(base / "curves/bezier1/tv/seed0-seed1/along.parquet")
    assert along["bn_policy"].str.contains("recomputed").all()  # resnet18 has BatchNorm


def test_parquet_table_with_a_builtin_model(tmp_path):
    rng = np.random.default_rng(1)
    f = rng.standard_normal((120, 4))
    pd.DataFrame({"a": f[:, 0], "b": f[:, 1], "c": f[:, 2], "d": f[:, 3], "target": (f[:, 0] > 0).astype(int),
                  "split": ["train"] * 80 + ["test"] * 40}).to_parquet(tmp_path / "table.parquet")
    layer = {"dataset": {"name": "file", "path": "table.parquet", "label_column": "target"},
             "model": {"name": "mlp", "options": {"hidden": 8}}, "planes": {"enabled": False}}
    _run(tmp_path, TINY_USER, layer)
    base = _check_curve_and_plane(tmp_path, "table", "mlp", "default", plane=False)
    m = io.read_parquet(base / "endpoints/default/seed0/metrics.parquet")
    assert m["epoch"].max() == 2 and (m["status"] == "ok").all()


def test_dataset_function(tmp_path):
    (tmp_path / "waves.py").write_text(
        "import torch\n"
        "def make(n=100, seed=0):\n"
        "    g = torch.Generator().manual_seed(seed)\n"
        "    x = torch.rand(n, 1, generator=g) * 6 - 3\n"
        "    return x, torch.sin(x) + 0.05 * torch.randn(n, 1, generator=g)\n")
    layer = {"dataset": {"name": "waves.py:make", "options": {"n": 90}, "test_fraction": 0.3},
             "model": {"name": "mlp", "options": {"hidden": 8}}, "planes": {"enabled": False}}
    _run(tmp_path, TINY_USER, layer)
    base = _check_curve_and_plane(tmp_path, "waves-make", "mlp", "default", plane=False)
    # a 1-D regression problem: its curve is drawn as functions (blog Figure 7)
    assert (base / "figures/curves/bezier1/default/seed0-seed1/functions.png").stat().st_size > 3000
    assert planned_jobs(snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "layer0.yaml"),
                                  str(tmp_path / "layer1.yaml"), configfile=None)) == {}
