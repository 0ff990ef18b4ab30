"""Snakemake's default job rate limit, and why losslab drops it.

``snakemake`` on the command line always runs with a job rate limiter, by default
``--max-jobs-per-timespan 100/1s``. While jobs wait for free cores, every pass of its scheduler loop
starts a ``threading.Timer`` that wakes the loop again one timespan later, and each finished job
adds one more such pass. The timers re-arm themselves, so their number grows with the jobs finished
so far, and so does the rate at which the scheduler wakes to re-check the inputs of every ready job
(upstream: snakemake/snakemake#3744 and #3804). On a run of several hundred jobs on 2 cores the
main ``snakemake`` process ends up using about half a core, taken from the jobs
(``benchmarks/scheduler_overhead.py`` measures it).

The rate limit itself never binds for losslab's jobs (seconds to minutes each), so the Snakefile's
``onstart:`` handler drops it when it has snakemake's default value; snakemake's Python API runs
without one by default. Any other value a user gives (``--max-jobs-per-timespan 20/1s``, a SLURM profile's) is
kept, with the timers that come with it.
"""
from __future__ import annotations

#: snakemake's command-line default of ``--max-jobs-per-timespan``: 100 jobs per 1 s
CLI_DEFAULT = (100, 1.0)


def drop_default_rate_limit(workflow) -> bool:
    """Remove the job rate limiter of ``workflow``'s scheduler (the Snakefile's ``workflow``
    object, from an ``onstart:`` handler, which runs once the scheduler exists and before it
    selects any job) when the limit is snakemake's command-line default; returns whether it did.
    Anything else (another limit, no scheduler, a snakemake whose internals differ) is left as is."""
    scheduler = getattr(workflow, "scheduler", None)
    limiter = getattr(scheduler, "job_rate_limiter", None)
    if limiter is None:
        return False
    try:
        given = (int(limiter.max_jobs), float(limiter.timespan))
    except (AttributeError, TypeError, ValueError):
        return False
    if given != CLI_DEFAULT:
        return False
    scheduler.job_rate_limiter = None
    return True
