"""The benchmark scripts run and compare like with like (their timings are not checked: speed is
never tested here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.e2e
def test_bench_planes_runs_on_a_finished_run_and_the_engine_equals_the_reference(tiny_run, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_planes.py"), "--results", str(tiny_run / "results"),
           "--threads", "1", "--cases", "curve,endpoints,tunnel,cifar", "--points", "3", "--cifar-points", "2",
           "--cifar-n", "16", "--big", "4", "--big-n", "8", "--big-seconds", "30", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert str(tiny_run / "results") in res["weights"]
    cases = {r["case"].split(" (")[0] for r in res["runs"]}
    assert cases == {"curve plane", "three-endpoint plane", "tunnel slice", "CIFAR-shaped SimpleCNN 3x32x32"}
    for r in res["runs"]:
        assert r["ref_ms"] > 0 and r["engine_ms"] > 0 and r["ratio"] == pytest.approx(r["ref_ms"] / r["engine_ms"], rel=1e-6)
        assert r["max_loss_err"] < 1e-4, r  # the engine computes what the reference loop computes
    big = res["big"]
    assert big["complete"] and big["points_done"] == 16 and big["finite_fraction"] == 1.0


def test_bench_hessian_runs_and_our_products_equal_the_reference(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_hessian.py"), "--epochs", "1", "--samples", "32",
           "--steps", "6", "--starts", "2", "--probes", "2", "--reps", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["hvp"]["max_abs_diff"] < 1e-4 and res["lanczos"]["top10_max_rel_diff"] < 1e-3
    assert res["trace"]["ours"] == pytest.approx(res["trace"]["ref"], rel=1e-4)  # the same probes
    for part in ("hvp", "lanczos", "trace"):
        assert res[part]["ratio"] > 0


def test_job_times_sums_a_run_by_rule_and_by_experiment(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import job_times as jt

    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, sec in [("train_endpoint/digits/mlp/endpoints/default/seed0.tsv", 2.0),
                     ("train_endpoint/mnist1d/cnn1d/endpoints/default/seed0.tsv", 3.0),
                     ("connector/mnist1d/cnn1d/connectors/default/seeds0-1/connector.tsv", 5.0),
                     ("wedge_tunnel/toy_wedge/tunnel.tsv", 1.0), ("scorecard/scorecard.tsv", 0.5)]:
        f = tmp_path / "logs" / "benchmarks" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(head + f"{sec}\t0:00:0{int(sec)}\t100\t0\t0\t0\t0\t0\t50\t{sec / 2}\n")
    jobs = jt.job_times(tmp_path)
    by_exp = jt.by_rule(jobs, "experiment")
    assert by_exp.loc["mnist1d/cnn1d", "total_s"] == 8.0 and by_exp.loc["mnist1d/cnn1d", "jobs"] == 2
    assert set(by_exp.index) == {"digits/mlp", "mnist1d/cnn1d", "toy_wedge", "shared"}
    assert jt.by_rule(jobs).loc["train_endpoint", "total_s"] == 5.0


def test_scheduler_overhead_runs_both_ways_and_the_hook_schedules_once_per_job(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "scheduler_overhead.py"), "--jobs", "4", "--seconds", "0.2",
           "--cores", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {line[:28].strip(): line[28:].split() for line in proc.stdout.splitlines()
            if line.startswith(("snakemake default", "losslab hook"))}
    assert set(rows) == {"snakemake default (100/1s)", "losslab hook"}
    assert int(rows["losslab hook"][2]) <= 5  # one scheduler pass per job, and the first
    assert "ratio of snakemake CPU time (default / hook)" in proc.stdout
