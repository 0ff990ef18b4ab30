"""The tiny config on a real single-node SLURM cluster through snakemake-executor-plugin-slurm.

The cluster is started by ``.ci/slurm/start.sh`` (``.ci/run`` does it before ``make test``; the
fixture does it here when the cluster is not up). It is never skipped: without root or without
the Debian packages the test fails and says why.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY
from losslab import io

START = REPO / ".ci" / "slurm" / "start.sh"
PARTITION = os.environ.get("LOSSLAB_SLURM_PARTITION", "debug")


@pytest.fixture(scope="module")
def slurm_cluster():
    if subprocess.run(["bash", str(START), "--check"], capture_output=True).returncode != 0:
        proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"could not start the test cluster with {START}:\n{proc.stdout}\n{proc.stderr}"
    return PARTITION


def _profile(tmp_path: Path, name: str, extra: dict) -> Path:
    """The project's profile with the partition and account of the test cluster filled in."""
    prof = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    prof["default-resources"].update(slurm_partition=PARTITION, slurm_account="root")
    prof.update(extra)
    out = tmp_path / f"profile-{name}"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(prof))
    return out


# What the SLURM run builds: a part of the tiny config's DAG with every kind of rule in it
# (GPU-tagged endpoint and curve training, curve evaluation, scatter-gather plane tiles; CPU
# gathers and figures, the alignment of seed 1 to seed 0 for the aligned curve), 17 jobs. Every
# job costs ~12 s under SLURM on the 2-core CI machine (two workflow parses, the script, status
# polling), so the whole tiny DAG (114 jobs; 71 of them took 14 minutes) would take most of CI's time.
TARGETS = ["results/digits/simplecnn/figures/curves_along_t.png",
           "results/digits/simplecnn/figures/planes/three-endpoints.png",
           "results/digits/simplecnn/figures/endpoint_training.png"]


def _run(workdir: Path, profile: Path, *configfiles: Path, dry: bool = False, targets=()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--profile", str(profile)] + (["-n"] if dry else []) + ["--configfile", *map(str, configfiles)]
    cmd += ["--", *targets] if targets else []
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)


def _jobs(log: str) -> list[dict]:
    """Each job Snakemake submitted: SLURM job id, rule (from the SLURM log path) and the
    resources Snakemake printed for that rule (jobs are printed in batches, so by rule)."""
    resources: dict[str, set[str]] = {}
    rule = None
    for line in log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            resources.setdefault(rule, set()).add("gpu=1" if "gpu=1" in line else "no gpu")
            rule = None
    jobs = []
    for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+?)/", log):
        jobs.append({"slurm_id": m.group(1), "rule": m.group(2), "gpu": resources[m.group(2)]})
    return jobs


def _same_artifacts(a: Path, b: Path) -> int:
    """Every Parquet table and checkpoint under a/results equals its twin under b/results."""
    files = sorted(p.relative_to(a) for p in (a / "results").rglob("*") if p.suffix in (".parquet", ".pt"))
    for rel in files:
        assert (b / rel).exists(), f"{rel} of the SLURM run has no twin in the local run"
        if rel.suffix == ".parquet":
            x, y = io.read_parquet(a / rel), io.read_parquet(b / rel)
            assert list(x.columns) == list(y.columns), rel
            if "planes" in rel.parts:  # the engine picks its kernels by timing: equal up to float rounding
                pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-5, atol=1e-6, obj=str(rel))
            else:
                assert x.equals(y), f"{rel} differs between the SLURM and the local run"
        else:
            assert_same_tensors(io.load_tensors(a / rel), io.load_tensors(b / rel), str(rel))
    return len(files)


def assert_same_tensors(x, y, where: str) -> None:
    assert type(x) is type(y), where
    if isinstance(x, torch.Tensor):
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), where
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            assert_same_tensors(x[k], y[k], f"{where}[{k}]")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            assert_same_tensors(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


@pytest.mark.slurm
@pytest.mark.e2e
def test_tiny_config_on_slurm_equals_local_run(slurm_cluster, tiny_run, tmp_path):
    work = tmp_path / "slurm_run"
    gpu = tmp_path / "gpu.yaml"  # GPU-tagged rules ask for the cluster's one (placeholder) GPU
    gpu.write_text(yaml.safe_dump({"compute": {"gpus_per_job": 1, "device": "cpu"}}))
    profile = _profile(tmp_path, "slurm", {"slurm-init-seconds-before-status-checks": 2, "jobs": 4,
                                           "retries": 0, "latency-wait": 5})
    proc = _run(work, profile, TINY, gpu, targets=TARGETS)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"SLURM run failed:\n{log[-8000:]}"

    jobs = _jobs(log)
    assert jobs, "no job was submitted to SLURM"
    # every job that ran went through sbatch: the local run's job count, rule by rule
    local_rules = sorted({j["rule"] for j in jobs})
    ids = ",".join(j["slurm_id"] for j in jobs)
    acct = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ids, "-o", "JobID,State,AllocTRES,Comment,Partition"],
                          capture_output=True, text=True, check=True).stdout
    rows = {r.split("|")[0]: r.split("|") for r in acct.strip().splitlines()}
    assert set(rows) == {j["slurm_id"] for j in jobs}, "sacct does not list every submitted job"
    for j in jobs:
        jid, state, tres, comment, part = rows[j["slurm_id"]]
        assert state == "COMPLETED", (j, state)
        assert comment.startswith(f"rule_{j['rule']}"), (j, comment)
        assert part == slurm_cluster
        assert len(j["gpu"]) == 1, j  # one rule, one kind of request
        assert ("gres/gpu=1" in tres) == ("gpu=1" in j["gpu"]), (j, tres)
    assert "train_endpoint" in local_rules
    assert all(j["gpu"] == {"gpu=1"} for j in jobs if j["rule"] == "train_endpoint")
    # the same jobs as a plain local run would do: a dry run from scratch lists them
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                           str(tmp_path / "fresh"), "-n", "--cores", "1", "--configfile", str(TINY), "--", *TARGETS],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    from conftest import planned_jobs
    planned = planned_jobs(plan)
    planned.pop("all", None)
    submitted: dict[str, int] = {}
    for j in jobs:
        submitted[j["rule"]] = submitted.get(j["rule"], 0) + 1
    assert submitted == planned
    assert {"train_endpoint", "train_curve", "evaluate_curve", "plane_tile", "plane_gather", "plot_plane"} <= set(submitted)

    # outputs equal a local run of the same config
    n = _same_artifacts(work, tiny_run)
    assert n >= 12
    for t in TARGETS:
        assert (work / t).stat().st_size > 5000 and (tiny_run / t).exists()


def test_profiles_ask_for_gpus_only_on_gpu_clusters(tmp_path):
    """profiles/slurm asks GPU-tagged rules for compute.gpus_per_job GPUs; profiles/slurm-cpu for none."""
    gpu = _run(tmp_path, _profile(tmp_path, "slurm", {}), REPO / "config.yaml", dry=True)
    cpu = _run(tmp_path, _profile(tmp_path, "slurm-cpu", {}), REPO / "config.yaml", dry=True)
    assert gpu.returncode == 0 and cpu.returncode == 0, gpu.stderr[-3000:] + cpu.stderr[-3000:]
    gpu_jobs, cpu_jobs = _dry_jobs(gpu.stdout + gpu.stderr), _dry_jobs(cpu.stdout + cpu.stderr)
    assert gpu_jobs and len(gpu_jobs) == len(cpu_jobs)
    assert all("gpu=1" in r for rule, r in gpu_jobs if rule == "train_endpoint")
    assert not any("gpu=" in r for _, r in cpu_jobs)
    for rule, r in gpu_jobs:
        assert re.search(r"runtime=\d+", r) and re.search(r"mem_mb=\d+", r) and "cpus_per_task=" in r, (rule, r)
        assert f"slurm_partition={PARTITION}" in r


def _dry_jobs(log: str) -> list[tuple[str, str]]:
    out, rule = [], None
    for line in log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            out.append((rule, line.strip()))
            rule = None
    return out
