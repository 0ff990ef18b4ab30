"""Shared test helpers: the library from this checkout, tiny configs, real Snakemake runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def snakemake(workdir: Path, *args: str, configfile: Path | None = TINY, check: bool = True,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the real workflow of this checkout in ``workdir`` (results land there)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2"]
    cmd += list(args)
    if configfile is not None:  # last: --configfile takes several values and would eat targets
        cmd += ["--configfile", str(configfile)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count} (empty if nothing to do)."""
    out = proc.stdout + proc.stderr
    jobs: dict[str, int] = {}
    if "Job stats:" not in out:
        return jobs
    table = out.split("Job stats:", 1)[1].splitlines()
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete run of the whole workflow on the tiny config, shared by e2e tests."""
    work = tmp_path_factory.mktemp("tiny_run")
    snakemake(work)
    return work


@pytest.fixture
def tiny_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the complete tiny run (timestamps and Snakemake metadata kept), for a
    test that checks one stage's outputs or changes files and config: no test retrains what the
    shared run already built."""
    work = tmp_path / "tiny"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work
