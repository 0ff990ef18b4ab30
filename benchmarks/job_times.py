"""Where a run's time went: the per-job `benchmark:` files of a finished run, summed by rule.

    python benchmarks/job_times.py [WORKDIR]        # default: the current directory
    python benchmarks/job_times.py WORKDIR --by experiment   # a run over several experiments

Every rule writes logs/benchmarks/<rule>/<job>.tsv (Snakemake's wall time `s`, peak memory
`max_rss` in MB, and CPU time). Prints one line per rule: jobs, total and mean wall seconds, share
of all job-seconds, the largest memory; then the totals. Not a test: measurements of one run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def job_times(workdir: Path) -> pd.DataFrame:
    """One row per job: rule, job (path below the rule), seconds, cpu seconds, max_rss (MB)."""
    rows = []
    for f in sorted((workdir / "logs" / "benchmarks").rglob("*.tsv")):
        rule = f.relative_to(workdir / "logs" / "benchmarks").parts[0]
        t = pd.read_csv(f, sep="\t")
        if len(t):
            rows.append({"rule": rule, "job": str(f.relative_to(workdir / "logs" / "benchmarks" / rule)),
                         "seconds": float(t["s"].iloc[-1]), "cpu_seconds": float(t["cpu_time"].iloc[-1]),
                         "max_rss": pd.to_numeric(t["max_rss"], errors="coerce").iloc[-1]})
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "cpu_seconds", "max_rss"])


def experiment_of(job: str) -> str:
    """``dataset/model`` of a job's benchmark path (``toy_wedge`` or ``shared`` for the jobs of no
    experiment: the toy wedge, the scorecard)."""
    parts = Path(job).parts
    if parts[0] == "toy_wedge":
        return "toy_wedge"
    return "/".join(parts[:2]) if len(parts) > 2 else "shared"


def by_rule(jobs: pd.DataFrame, key: str = "rule") -> pd.DataFrame:
    if key == "experiment":
        jobs = jobs.assign(experiment=jobs["job"].map(experiment_of))
    g = jobs.groupby(key).agg(jobs=("job", "count"), total_s=("seconds", "sum"), mean_s=("seconds", "mean"),
                                 max_s=("seconds", "max"), cpu_s=("cpu_seconds", "sum"), max_rss_mb=("max_rss", "max"))
    g["share"] = g["total_s"] / g["total_s"].sum()
    return g.sort_values("total_s", ascending=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("."))
    ap.add_argument("--by", choices=("rule", "experiment"), default="rule", help="sum by rule (default) or experiment")
    args = ap.parse_args(argv)
    jobs = job_times(args.workdir)
    if jobs.empty:
        raise SystemExit(f"no benchmark files under {args.workdir / 'logs' / 'benchmarks'}: run the workflow first")
    table = by_rule(jobs, args.by)
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"\n{len(jobs)} jobs, {jobs['seconds'].sum():.0f} job-seconds, {jobs['cpu_seconds'].sum():.0f} CPU-seconds; "
          f"median job {jobs['seconds'].median():.1f} s")


if __name__ == "__main__":
    main()
