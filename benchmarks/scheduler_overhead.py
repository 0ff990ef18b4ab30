"""CPU time of the `snakemake` process itself on a run of many jobs: snakemake's command-line
default (a job rate limit of 100/1s, whose re-arming timers make the scheduler wake more often
with every job finished) against losslab's Snakefile hook that drops that default
(`losslab.scheduling.drop_default_rate_limit`).

    python benchmarks/scheduler_overhead.py                     # 300 jobs of 1 s on 2 cores
    python benchmarks/scheduler_overhead.py --jobs 662 --seconds 7   # the claims preset's shape

The jobs only sleep, so the CPU time measured (user + system of snakemake and its job shells, from
`os.wait4`) is the scheduler's. It prints both, their ratio, the wall times and the scheduler passes
(`Resources before job selection` lines of `--verbose`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SNAKEFILE = """
import sys
sys.path.insert(0, {src!r})
from losslab.scheduling import drop_default_rate_limit
if config.get("hook"):
    onstart:
        drop_default_rate_limit(workflow)

rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))

rule job:
    output: "out/{{i}}.txt"
    shell: "sleep {seconds} && touch {{output}}"
"""


def run(folder: Path, hook: bool, cores: int) -> dict:
    log = folder / f"snakemake-{'hook' if hook else 'default'}.log"
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--verbose", "--nolock",
           "--config", f"hook={int(hook)}"]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"snakemake failed, see {log}")
    passes = log.read_text().count("Resources before job selection")
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": wall, "passes": passes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    rows = {}
    for hook in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "Snakefile").write_text(SNAKEFILE.format(src=str(SRC), jobs=args.jobs, seconds=args.seconds))
            rows["losslab hook" if hook else "snakemake default (100/1s)"] = run(folder, hook, args.cores)
    print(f"{args.jobs} jobs of {args.seconds:g} s on {args.cores} cores")
    print(f"{'':28s} {'snakemake CPU s':>16s} {'wall s':>8s} {'scheduler passes':>17s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['cpu_s']:16.1f} {r['wall_s']:8.1f} {r['passes']:17d}")
    ref, ours = rows["snakemake default (100/1s)"], rows["losslab hook"]
    print(f"ratio of snakemake CPU time (default / hook): {ref['cpu_s'] / max(ours['cpu_s'], 1e-9):.1f}x; "
          f"of scheduler passes: {ref['passes'] / max(ours['passes'], 1):.1f}x")


if __name__ == "__main__":
    main()
