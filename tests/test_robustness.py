"""Failure modes: killed jobs resume, writes are atomic, bad config and damaged files fail clearly,
checkpoints never run code, and runs are deterministic on the CPU."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY, snakemake, workflow_copy
from losslab import curves, io
from losslab.config import ConfigError, validate_config
from losslab.plan import build_plan

ENDPOINT = "results/digits/simplecnn/endpoints/default/seed0"


def _default():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def _set(cfg, dotted, value):
    node = cfg
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return cfg


# ---- bad configuration: rejected before any job runs, with the key named ----------------------
BAD = [
    ("endpoints.train.epochs", "ten", "endpoints.train.epochs = 'ten' has the wrong type; expected integer"),
    ("endpoints.train.epochs", 0, "endpoints.train.epochs = 0 is out of range; it must be >= 1"),
    ("endpoints.train.batch_size", -64, "endpoints.train.batch_size = -64 is out of range"),
    ("endpoints.seeds", [0, -1], "endpoints.seeds[1] = -1 is out of range"),
    ("endpoints.settings.wide.lr", -0.1, "endpoints.settings.wide.lr = -0.1 is out of range"),
    ("endpoints.train.optimizer", "rmsprop", "endpoints.train.optimizer = 'rmsprop' is not allowed; allowed values: adam, sgd"),
    ("evaluation.train_size", 0, "evaluation.train_size = 0 is out of range; it must be >= 1"),
    ("evaluation.bn_size", "many", "evaluation.bn_size = 'many' has the wrong type"),
    ("model.width", 0, "model.width = 0 is out of range; it must be > 0"),
    ("model.name", "alexnet", "model.name = 'alexnet': unknown model; known models: simplecnn, mlp"),
    ("dataset.name", "imagenet", "dataset.name = 'imagenet': unknown dataset"),
    ("dataset.test_fraction", 1.5, "dataset.test_fraction = 1.5 is out of range; it must be < 1"),
    ("dataset.download", "yes", "dataset.download = 'yes' has the wrong type; expected boolean"),
    ("compute.threads", 0, "compute.threads = 0 is out of range"),
    ("compute.device", "gpu", "compute.device"),
    ("endpoint.seeds", [0], "unknown key endpoint; allowed keys here:"),
    ("endpoints.train.learning_rate", 0.1, "unknown key endpoints.train.learning_rate"),
]


@pytest.mark.parametrize("key, value, expected", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_config_names_the_key(key, value, expected):
    cfg = _set(_default(), key, copy.deepcopy(value))
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert expected in str(err.value)


def test_missing_torchvision_data_without_download_names_the_key(tmp_path):
    cfg = _set(_set(_default(), "dataset.name", "mnist"), "dataset.data_dir", str(tmp_path / "nodata"))
    with pytest.raises(ConfigError) as err:
        build_plan(validate_config(cfg))
    msg = str(err.value)
    assert "dataset.name" in msg and "dataset.download: true" in msg and str(tmp_path / "nodata") in msg


@pytest.mark.parametrize("key, value, expected", [BAD[0], BAD[3], BAD[-2]], ids=["type", "negative", "unknown"])
def test_snakemake_rejects_bad_config_before_any_job(key, value, expected, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_set({}, key, value)))
    proc = snakemake(tmp_path, "--configfile", str(TINY), str(bad), configfile=None, check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_nested_cli_config_values_keep_their_types():
    """`--config compute="{gpus_per_job: 0}"` (and a profile's config:) arrive as strings."""
    cfg = _default()
    cfg["compute"] = {"gpus_per_job": "0", "device": "cpu"}
    cfg["endpoints"]["train"]["lr"] = "0.01"
    cfg["endpoints"]["seeds"] = ["4", "5"]
    validate_config(cfg)
    assert cfg["compute"]["gpus_per_job"] == 0 and cfg["endpoints"]["train"]["lr"] == 0.01
    assert cfg["endpoints"]["seeds"] == [4, 5] and cfg["compute"]["threads"] == 1


# ---- damaged files ------------------------------------------------------------------------
def _point(width=1.0):
    from losslab.flat import FlatModel
    from losslab.models import build_model, spec_json

    spec = {"name": "simplecnn", "width": width, "dropout": 0.0, "batchnorm": False, "options": {}}
    torch.manual_seed(0)
    fm = FlatModel(build_model(spec, (1, 8, 8), 10))
    return fm.point(model_spec=spec_json(spec), status="ok")


def test_truncated_and_corrupted_checkpoints_name_the_file(tmp_path):
    good = tmp_path / "model.pt"
    io.save_point(_point(), good)
    data = good.read_bytes()
    trunc = tmp_path / "truncated.pt"
    trunc.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(data[:100] + bytes(reversed(data[100:])))
    for f in (trunc, garbage):
        with pytest.raises(io.ArtifactError) as err:
            io.load_point(f)
        assert str(f) in str(err.value) and "truncated, corrupted" in str(err.value)
    assert io.load_point(good).flat.numel() > 0


def test_truncated_parquet_names_the_file(tmp_path):
    f = tmp_path / "metrics.parquet"
    io.write_parquet(pd.DataFrame({"seed": [0, 1], "loss": [0.5, 0.25]}), f)
    f.write_bytes(f.read_bytes()[:-20])
    with pytest.raises(io.ArtifactError) as err:
        io.read_parquet(f)
    assert str(f) in str(err.value) and "truncated or corrupted" in str(err.value)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['LOSSLAB_EVIL_MARKER']}",))


def test_checkpoints_load_without_running_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LOSSLAB_EVIL_MARKER", str(marker))
    f = tmp_path / "model.pt"
    torch.save({"format": "losslab.point/1", "flat": torch.zeros(3), "buffers": {}, "meta": {"x": _Evil()}}, f)
    with pytest.raises(io.ArtifactError) as err:
        io.load_point(f)
    assert not marker.exists(), "loading a checkpoint ran code"
    assert f"checkpoint {f} was refused" in str(err.value) and "would run code" in str(err.value)


def test_endpoints_with_mismatched_shapes_are_rejected():
    a, b = _point(1.0), _point(0.5)
    with pytest.raises(io.ArtifactError) as err:
        io.check_compatible({"seed0/model.pt": a, "seed1/model.pt": b})
    assert "seed0/model.pt" in str(err.value) and "seed1/model.pt" in str(err.value)
    c = _point(1.0)
    c.flat = c.flat[:-1]
    with pytest.raises(io.ArtifactError, match="different parameter counts"):
        io.check_compatible({"a": a, "b": c})


def test_atomic_write_killed_mid_write_leaves_no_file(tmp_path):
    target = tmp_path / "table.parquet"
    code = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(REPO / 'src')!r})\n"
        "from losslab.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'PAR1' + b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("table.parquet.tmp-")] == []


@pytest.mark.e2e
def test_corrupted_parquet_fails_the_rule_cleanly(tiny_copy):
    work = tiny_copy
    bad = work / ENDPOINT / "metrics.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    summary = "results/digits/simplecnn/endpoints/summary.parquet"
    proc = snakemake(work, "--forcerun", "endpoint_summary", "--configfile", str(TINY), "--", summary,
                     configfile=None, check=False)
    out = proc.stdout + proc.stderr
    log = (work / "logs/digits/simplecnn/endpoints/summary.log").read_text()
    assert proc.returncode != 0 and "endpoint_summary" in out
    assert f"{ENDPOINT}/metrics.parquet is truncated or corrupted" in out
    assert f"job failed: ArtifactError: table {ENDPOINT}/metrics.parquet is truncated or corrupted" in log
    assert not (work / summary).exists()  # no half-made output survives the failed rule


# ---- resumable training -------------------------------------------------------------------
@pytest.mark.e2e
def test_killed_training_resumes_to_the_same_weights(tmp_path):
    longer = tmp_path / "longer.yaml"  # long enough that the kill lands part-way
    longer.write_text(yaml.safe_dump({"endpoints": {"seeds": [0], "checkpoint_every": 2, "train": {"epochs": 10}}}))
    target = f"{ENDPOINT}/model.pt"
    args = ["--configfile", str(TINY), str(longer)]

    ref = tmp_path / "uninterrupted"
    snakemake(ref, *args, "--", target, configfile=None)

    work = tmp_path / "killed"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workflow_copy() / "Snakefile"), "-d", str(work), "--cores", "1",
           *args, "--", target]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(workflow_copy() / "src")))
    resume = work / ENDPOINT / "resume.pt"
    deadline = time.time() + 600
    while not resume.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the training script
    proc.wait()
    assert resume.exists(), "the training job never wrote its resume state"
    # a killed job leaves no file that looks complete: only the resume state (itself complete)
    left = sorted(p.name for p in (work / ENDPOINT).iterdir())
    assert "model.pt" not in left and "metrics.parquet" not in left, left
    assert all(n == "resume.pt" or ".tmp-" in n for n in left), left
    state = io.load_tensors(resume)
    assert 2 <= state["epoch"] < 10

    snakemake(work, "--unlock", *args, configfile=None)  # the killed run left its lock
    snakemake(work, *args, "--", target, configfile=None)  # rerun-incomplete: profiles/default
    log = (work / "logs/digits/simplecnn/endpoints/default/seed0.log").read_text()
    assert "resumed from" in log and f"at epoch {state['epoch']}" in log
    assert not resume.exists()
    a, b = io.load_point(work / target), io.load_point(ref / target)
    assert torch.equal(a.flat, b.flat) and a.meta == b.meta
    ma, mb = io.read_parquet(work / ENDPOINT / "metrics.parquet"), io.read_parquet(ref / ENDPOINT / "metrics.parquet")
    assert ma.equals(mb)


# ---- determinism --------------------------------------------------------------------------
@pytest.mark.e2e
def test_same_config_gives_identical_tables(tiny_run, tmp_path):
    targets = ["results/digits/simplecnn/endpoints/summary.parquet"]
    snakemake(tmp_path, *targets)
    tables = sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*.parquet"))
    assert len(tables) >= 4
    for rel in tables:
        assert io.read_parquet(tmp_path / rel).equals(io.read_parquet(tiny_run / rel)), rel
    for rel in sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*.pt")):
        assert torch.equal(io.load_point(tmp_path / rel).flat, io.load_point(tiny_run / rel).flat), rel


@pytest.mark.e2e
def test_killed_curve_training_resumes_to_the_same_curve(tiny_run, tmp_path):
    cfg = tmp_path / "curve.yaml"  # long enough that the kill lands part-way
    cfg.write_text(yaml.safe_dump({"curves": {"kinds": ["bezier"], "epochs": 12, "checkpoint_every": 2}}))
    folder = "results/digits/simplecnn/curves/bezier1/default/seed0-seed1"
    target = f"{folder}/curve.pt"
    # both runs start from the finished tiny run: its endpoints are there, so the kill hits curve
    # training (its params changed: 12 epochs instead of 3)
    targets = [target, f"{folder}/epochs.pt"]
    args = ["--configfile", str(TINY), str(cfg)]
    ref, work = tmp_path / "uninterrupted", tmp_path / "killed"
    for d in (ref, work):
        shutil.copytree(tiny_run, d, symlinks=True)
    snakemake(ref, *args, "--", *targets, configfile=None)

    cmd = [sys.executable, "-m", "snakemake", "-s", str(workflow_copy() / "Snakefile"), "-d", str(work), "--cores", "1",
           *args, "--", *targets]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(workflow_copy() / "src")))
    resume = work / folder / "resume.pt"
    deadline = time.time() + 600
    while not resume.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert resume.exists(), "curve training never wrote its resume state"
    assert not (work / target).exists()
    epoch = io.load_tensors(resume)["epoch"]
    assert 2 <= epoch < 12

    snakemake(work, "--unlock", *args, configfile=None)
    snakemake(work, *args, "--", *targets, configfile=None)
    log = (work / "logs/digits/simplecnn/curves/bezier1/default/seed0-seed1/train.log").read_text()
    assert "resumed curve training from" in log and f"at epoch {epoch}" in log
    assert not resume.exists()
    a, b = io.load_tensors(work / target), io.load_tensors(ref / target)
    assert torch.equal(a["control"], b["control"])
    ea, eb = (curves.load_curve_epochs(d / folder / "epochs.pt")["controls"] for d in (work, ref))
    assert ea.shape[0] == 13 and torch.equal(ea, eb)
