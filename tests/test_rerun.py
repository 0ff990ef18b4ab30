"""Rerun only what changed: dry runs on the whole DAG after a complete tiny run.

Written generically over the config sections, library modules and rules found at test time,
so every stage that is added later is covered without editing this file.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, descendants, dry_run_jobs, snakemake, workflow_copy
from losslab.config import load_schema, module_file, validate_config

pytestmark = pytest.mark.e2e

# Sections whose values endpoint training may legitimately depend on.
ENDPOINT_SECTIONS = {"dataset", "model", "evaluation", "endpoints"}
# Operational keys: they change how and where jobs run, never what they compute.
OPERATIONAL = {"compute": {"device": "cpu", "threads": 2, "gpus_per_job": 3}}
# Operational keys inside stage sections (how often to save resumable state).
OPERATIONAL_LEAVES = {"checkpoint_every"}
# Switches: turning a part off removes its targets, so it legitimately reruns nothing.
SWITCH_LEAVES = {"enabled"}


def plan(proc) -> list[dict]:
    return dry_run_jobs(proc)


@pytest.fixture(scope="module")
def done(tiny_run, tmp_path_factory) -> Path:
    """A private copy of the complete tiny run (timestamps and Snakemake metadata kept)."""
    work = tmp_path_factory.mktemp("rerun") / "w"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work


@pytest.fixture(scope="module")
def full_plan(tmp_path_factory) -> list[dict]:
    """Every job of the tiny config's whole DAG, from scratch."""
    return plan(snakemake(tmp_path_factory.mktemp("fresh"), "-n"))


def tiny_config() -> dict:
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    over = yaml.safe_load(TINY.read_text())

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    return validate_config(merge(base, over))


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k in sorted(node):
            yield from _leaves(node[k], path + (k,))
    elif not isinstance(node, list):
        yield path, node


def _changed(value):
    """A different value of the same type (None when there is no obvious one)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value > 0 else value + 0.125
    return None


def one_change(cfg: dict, section: str) -> tuple[tuple, object] | None:
    """The first numeric or boolean key of ``section`` whose change keeps the config valid."""
    for path, value in _leaves(cfg[section], (section,)):
        new = _changed(value)
        if new is None or path[-1] in OPERATIONAL_LEAVES | SWITCH_LEAVES:
            continue
        trial = copy.deepcopy(cfg)
        node = trial
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = new
        try:
            validate_config(trial)
        except Exception:
            continue
        return path, new
    return None


def overlay(tmp_path: Path, path: tuple, value) -> Path:
    doc: dict = {}
    node = doc
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    f = tmp_path / "change.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def dry(work: Path, *extra_configs: Path):
    # the tiny config first, the change last (--configfile layers merge left to right)
    return snakemake(work, "-n", "--configfile", str(TINY), *map(str, extra_configs), configfile=None)


def check_only_changed(jobs: list[dict], work: Path) -> None:
    """Every scheduled job is new, has changed params, or is downstream of a scheduled job."""
    allowed = ("Params have changed", "Input files updated by another job", "Missing output files")
    for j in jobs:
        assert j["reason"].startswith(allowed) or any(a in j["reason"] for a in allowed), j
        if "Missing output files" in j["reason"]:
            assert not all((work / o).exists() for o in j["output"]), j


def test_second_run_does_nothing(done):
    proc = dry(done)
    assert plan(proc) == [], proc.stdout[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _sections():
    props = load_schema()["properties"]
    return sorted(k for k, v in props.items() if v.get("type") == "object")


@pytest.mark.parametrize("section", _sections())
def test_changing_one_section_reruns_only_its_users(section, done, tmp_path):
    cfg = tiny_config()
    if section in OPERATIONAL:
        f = tmp_path / "change.yaml"
        f.write_text(yaml.safe_dump({section: OPERATIONAL[section]}))
        jobs = plan(dry(done, f))
        assert jobs == [], f"operational keys of {section} must not rerun anything: {jobs}"
        return
    change = one_change(cfg, section)
    assert change is not None, f"no numeric or boolean key to change in section {section}"
    path, value = change
    jobs = plan(dry(done, overlay(tmp_path, path, value)))
    key = ".".join(path)
    assert jobs, f"changing {key} reruns nothing: the key is not a param of any rule"
    check_only_changed(jobs, done)
    direct = {j["rule"] for j in jobs if "Params have changed" in j["reason"]}
    # a key that names outputs (a seed in a path) schedules new jobs instead of rerunning old ones
    new = [j for j in jobs if not any((done / o).exists() for o in j["output"])]
    assert direct or new, f"changing {key} reruns no rule through its params and plans no new job: {jobs}"
    if section not in ENDPOINT_SECTIONS:
        retrained = [j for j in jobs if j["rule"] == "train_endpoint" and all((done / o).exists() for o in j["output"])]
        assert not retrained, f"changing {key} retrains existing endpoints: {retrained}"


def _modules():
    """Every library module, subpackages included ("figures.curves"), as dotted names."""
    root = REPO / "src" / "losslab"
    names = {".".join(p.relative_to(root).with_suffix("").parts) for p in root.rglob("*.py")}
    return sorted(n.removesuffix(".__init__") for n in names if n not in ("__init__", "io", "device"))


@pytest.mark.parametrize("module", _modules())
def test_editing_one_module_reruns_only_its_rules(module, done, full_plan):
    """Snakemake reruns on a changed checksum of an input, not on a bare touch: edit the file.

    Exactly the jobs that list the module as an input, and their descendants, are scheduled.
    A user that is also downstream of another user is reported by Snakemake with the reason
    "Input files updated by another job" only, so the reason is checked per kind of job.
    """
    path = module_file(module, workflow_copy() / "src" / "losslab")  # the copy the runs use, not the checkout
    users = {tuple(j["output"]) for j in full_plan if str(path) in j["input"]}
    below = descendants(full_plan, users)
    original, st = path.read_bytes(), path.stat()
    try:
        path.write_bytes(original + b"\n# edited by tests/test_rerun.py\n")
        jobs = plan(dry(done))
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    if not users:  # only imported while Snakemake parses the workflow (config validation)
        assert jobs == [], f"{module}.py is no job's input, yet editing it reruns {jobs}"
        return
    scheduled = {tuple(j["output"]) for j in jobs}
    assert scheduled == users | below, (
        f"{module}.py: unexpected {sorted(scheduled - users - below)}, missing {sorted((users | below) - scheduled)}")
    for j in jobs:
        out = tuple(j["output"])
        if "Updated input files" in j["reason"]:
            assert out in users, j  # rerun for the edit itself: must list the module
        else:
            assert "Input files updated by another job" in j["reason"] and out in below, j
    assert any("Updated input files" in j["reason"] for j in jobs), f"editing {module}.py reruns nothing directly"
    if not any(j["rule"] == "train_endpoint" for j in full_plan if str(path) in j["input"]):
        assert not any(j["rule"] == "train_endpoint" for j in jobs), f"editing {module}.py retrains endpoints"
