"""The Snakefile drops snakemake's default job rate limit (losslab.scheduling): only that default,
and with it gone a real snakemake run wakes its scheduler about once per job."""
from __future__ import annotations

import sys

import pytest
from snakemake.settings.types import MaxJobsPerTimespan

from conftest import REPO
from losslab.scheduling import drop_default_rate_limit

sys.path.insert(0, str(REPO / "benchmarks"))
import scheduler_overhead as so  # noqa: E402


class _Limiter:
    def __init__(self, given: str):
        self._limit = MaxJobsPerTimespan.parse_choice(given)
        self.max_jobs, self.timespan = self._limit.max_jobs, self._limit.timespan


class _Workflow:
    def __init__(self, given):
        self.scheduler = type("Scheduler", (), {})()
        self.scheduler.job_rate_limiter = _Limiter(given) if given else None


def test_only_snakemakes_command_line_default_is_dropped():
    wf = _Workflow("100/1s")
    assert drop_default_rate_limit(wf) and wf.scheduler.job_rate_limiter is None
    for given in ("20/1s", "100/1m", "6000/1m"):
        wf = _Workflow(given)
        assert not drop_default_rate_limit(wf) and wf.scheduler.job_rate_limiter is not None, given
    assert not drop_default_rate_limit(_Workflow(None))
    assert not drop_default_rate_limit(object())  # no scheduler (a snakemake of other internals)


def test_the_workflow_calls_the_hook_once_the_scheduler_exists():
    text = (REPO / "Snakefile").read_text()
    assert "\nonstart:\n    drop_default_rate_limit(workflow)\n" in text


@pytest.mark.parametrize("hook", [True, False])
def test_a_real_run_without_the_default_limit_wakes_the_scheduler_about_once_per_job(tmp_path, hook):
    # the workflow and runner of benchmarks/scheduler_overhead.py, on five jobs of 1.2 s
    jobs = 5
    (tmp_path / "Snakefile").write_text(so.SNAKEFILE.format(src=str(REPO / "src"), jobs=jobs, seconds=1.2))
    passes = so.run(tmp_path, hook, cores=1)["passes"]
    log = (tmp_path / f"snakemake-{'hook' if hook else 'default'}.log").read_text()
    assert "Submitting maximum 100 job(s) over 1.0 second(s)" in log  # snakemake's default, then dropped by the hook
    if hook:
        # one pass per finished job (and the first): nothing else wakes the scheduler
        assert passes <= jobs + 1, passes
    else:
        # the control: each pass arms a timer that re-arms itself every second, so the waiting
        # jobs are re-scheduled more often than once each
        assert passes > jobs + 1, passes
