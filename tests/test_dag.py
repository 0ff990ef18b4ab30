"""The DAG Snakemake builds from the plan: every artifact is a target of `rule all`, the include
order of the rule files changes nothing, and a deleted artifact of any rule is rebuilt together
with exactly its descendants."""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, copy_workflow, descendants, dry_run_jobs, snakemake
from losslab.config import validate_config
from losslab.plan import build_plan

pytestmark = pytest.mark.e2e


def _outputs(jobs) -> set[str]:
    return {o for j in jobs for o in j["output"]}


def _tiny_plan():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    return build_plan(validate_config(merge(cfg, yaml.safe_load(TINY.read_text()))))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> list[dict]:
    """Every job of the tiny config's DAG from scratch, with the `all` job."""
    return dry_run_jobs(snakemake(tmp_path_factory.mktemp("fresh"), "-n"), keep_all=True)


def test_every_artifact_is_a_target_of_rule_all_and_the_plan_lists_every_job(fresh):
    jobs = [j for j in fresh if j["rule"] != "all"]
    everything = _outputs(jobs)
    (all_job,) = [j for j in fresh if j["rule"] == "all"]
    assert everything <= set(all_job["input"]), sorted(everything - set(all_job["input"]))[:10]
    plan = _tiny_plan()
    assert everything == set(plan.targets)
    planned = {}
    for job in plan.jobs.values():
        planned[job.rule] = planned.get(job.rule, 0) + 1
    listed = {}
    for j in jobs:
        listed[j["rule"]] = listed.get(j["rule"], 0) + 1
    assert listed == planned


def _includes_shuffled(snakefile: Path, order) -> None:
    text = snakefile.read_text()
    lines = re.findall(r'^include: "workflow/rules/(\w+)\.smk"$', text, flags=re.M)
    assert lines[0] == "common" and len(lines) >= 8  # common.smk holds the helpers, so it stays first
    stages = order(lines[1:])
    assert sorted(stages) == sorted(lines[1:]) and stages != lines[1:]
    block = "\n".join(f'include: "workflow/rules/{s}.smk"' for s in ["common"] + stages)
    text = re.sub(r'(^include: "workflow/rules/\w+\.smk"\n)+', block + "\n", text, flags=re.M)
    snakefile.write_text(text)


@pytest.mark.parametrize("order", ["reversed", "seeded-shuffle"])
def test_include_order_changes_nothing(order, fresh, tmp_path):
    repo = copy_workflow(tmp_path / "repo")
    how = {"reversed": lambda s: s[::-1], "seeded-shuffle": lambda s: random.Random(7).sample(s, len(s))}[order]
    _includes_shuffled(repo / "Snakefile", how)
    jobs = dry_run_jobs(snakemake(tmp_path / "work", "-n", snakefile=repo / "Snakefile"), keep_all=True)

    def key(j):  # the checkout's path prefix differs between the two copies
        strip = lambda xs: tuple(sorted(x.split("/src/losslab/")[-1] for x in xs))  # noqa: E731
        return j["rule"], strip(j["output"]), strip(j["input"])

    assert sorted(map(key, jobs)) == sorted(map(key, fresh))


@pytest.fixture(scope="module")
def done(tiny_run, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("deletions") / "w"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work


# import_endpoint needs checkpoint files made outside the workflow, which the shared tiny run has
# not: test_user_inputs.py deletes and replaces imported checkpoints in its own run.
RULES = sorted({r for f in (REPO / "workflow" / "rules").glob("*.smk")
                for r in re.findall(r"^rule (\w+):", f.read_text(), flags=re.M)} - {"import_endpoint"})


@pytest.mark.parametrize("rule", RULES)
def test_deleting_one_artifact_reruns_exactly_it_and_its_descendants(rule, fresh, done, tmp_path):
    """The victim of each rule is chosen explicitly: its job whose smallest output path sorts first."""
    jobs = [j for j in fresh if j["rule"] != "all"]
    mine = [j for j in jobs if j["rule"] == rule]
    assert mine, f"the tiny config plans no {rule} job: extend tests/configs/tiny.yaml so every rule runs"
    victim = min(mine, key=lambda j: min(j["output"]))
    target = min(victim["output"])
    work = tmp_path / "w"
    shutil.copytree(done, work, symlinks=True)
    (work / target).unlink()
    scheduled = {tuple(sorted(j["output"])) for j in dry_run_jobs(snakemake(work, "-n"))}
    expected = {tuple(sorted(o)) for o in descendants(jobs, {tuple(victim["output"])}) | {tuple(victim["output"])}}
    assert scheduled == expected, (rule, target, sorted(scheduled ^ expected)[:6])
