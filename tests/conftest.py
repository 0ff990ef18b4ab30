"""Shared test helpers: the library from this checkout, tiny configs, real Snakemake runs."""
from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
TINY = REPO / "tests" / "configs" / "tiny.yaml"
_COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "logs", ".snakemake", "__pycache__", "*.egg-info",
                                      ".pytest_cache", "data", "build")


def copy_workflow(dest: Path) -> Path:
    """A copy of this checkout's workflow (Snakefile, rules, scripts, schemas, library) at ``dest``."""
    shutil.copytree(REPO, dest, ignore=_COPY_IGNORE)
    return dest


@functools.lru_cache(maxsize=None)
def workflow_copy() -> Path:
    """The session's copy of the workflow that Snakemake runs: tests that edit a module edit this
    copy, never the checkout."""
    root = Path(tempfile.mkdtemp(prefix="losslab-workflow-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return copy_workflow(root / "repo")


def snakemake(workdir: Path, *args: str, configfile: Path | None = TINY, check: bool = True,
              timeout: int = 900, snakefile: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real workflow (the session's copy, or ``snakefile``) in ``workdir`` (results land there)."""
    snakefile = snakefile or workflow_copy() / "Snakefile"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), "--cores", "2"]
    cmd += list(args)
    if configfile is not None:  # last: --configfile takes several values and would eat targets
        cmd += ["--configfile", str(configfile)]
    env = dict(os.environ, PYTHONPATH=str(snakefile.parent / "src"))
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


def dry_run_jobs(proc: subprocess.CompletedProcess, keep_all: bool = False) -> list[dict]:
    """The jobs a dry run lists: rule, outputs, inputs and the reason Snakemake gives
    (the `all` job only with ``keep_all``)."""
    jobs, cur = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            cur = {"rule": m.group(1), "output": [], "input": [], "reason": ""}
            jobs.append(cur)
            continue
        if cur is None or not line.startswith("    "):
            cur = None
            continue
        key, _, val = line.strip().partition(": ")
        if key in ("output", "input"):
            cur[key] = [v.strip() for v in val.split(",") if v.strip()]
        elif key == "reason":
            cur["reason"] = val
    return [j for j in jobs if keep_all or j["rule"] != "all"]


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


def descendants(jobs: list[dict], roots: set[tuple]) -> set[tuple]:
    """Outputs (as tuples) of every job downstream of the jobs whose outputs are ``roots``."""
    made_by = {o: tuple(j["output"]) for j in jobs for o in j["output"]}
    children: dict[tuple, set[tuple]] = {}
    for j in jobs:
        for i in j["input"]:
            if i in made_by:
                children.setdefault(made_by[i], set()).add(tuple(j["output"]))
    seen, todo = set(), list(roots)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen
