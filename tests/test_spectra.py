"""The spectra stage end to end on the shared tiny run (nothing is recomputed here but a dry run)."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import TINY, planned_jobs, snakemake

BASE = "results/digits/simplecnn"
SP = f"{BASE}/spectra"
FIGS = [f"{BASE}/figures/spectra/{n}.png" for n in ("spectra_density", "spectra_top_trace", "spectra_short")]


@pytest.mark.e2e
def test_spectra_stage_end_to_end(tiny_copy):
    tmp_path = tiny_copy
    for f in FIGS:
        assert (tmp_path / f).stat().st_size > 1000, f
    cur = f"{SP}/curves/bezier1/default/seed0-seed1"
    counts = pd.read_parquet(tmp_path / cur / "counts.parquet")
    assert set(counts.path) == {"curve", "line"} and sorted(counts.t.unique()) == [0.0, 0.5, 1.0]
    assert counts.groupby(["path", "t"]).start.nunique().eq(2).all()  # one row per point and start
    assert (counts.samples == 100).all() and counts.bn_policy.str.startswith("none").all()
    assert (counts.trace_se > 0).all() and (counts.top_eigenvalue > 0).all()
    # the endpoints are one computation: curve and line agree exactly at t = 0 and 1
    ends = counts[counts.t.isin([0.0, 1.0])].pivot_table(index=["t", "start"], columns="path", values="top_eigenvalue")
    assert (ends["curve"] == ends["line"]).all()
    eig = pd.read_parquet(tmp_path / cur / "eigenvalues.parquet")
    per = eig.groupby(["path", "t", "start"]).short.sum().rename("listed").reset_index().merge(counts)
    assert (per.listed == per.short_count).all()
    dens = pd.read_parquet(tmp_path / cur / "density.parquet")
    assert dens.groupby(["path", "t"]).size().eq(40).all() and (dens.density >= 0).all()
    nodes = pd.read_parquet(tmp_path / f"{SP}/connectors/default/seeds0-1/counts.parquet")
    assert nodes.node.nunique() == 5 and set(nodes.path) == {"connector"}
    centres = pd.read_parquet(tmp_path / f"{SP}/mconnectors/default/centre-seeds0-1-2/counts.parquet")
    assert sorted(centres.n.unique()) == [1, 3]

    # editing the spectra section reruns the spectra jobs only
    cfg = yaml.safe_load(TINY.read_text())
    cfg["spectra"]["probes"] = 6
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(tmp_path, "-n", *FIGS, configfile=path))
    assert set(jobs) == {"spectra_curve", "spectra_connector", "spectra_centres", "plot_spectra"}, jobs
