"""Connector stages end to end through real Snakemake on the tiny config, plus config errors."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import TINY, planned_jobs, snakemake

BASE = "results/digits/simplecnn"
CON = f"{BASE}/connectors/default/seeds0-1"
TOY = "results/toy_wedge"
FIGS = [f"{TOY}/figures/{n}.png" for n in ("hyperplanes", "tunnel", "radial")] + [
    f"{BASE}/figures/connectors/{n}.png" for n in ("connector_path", "connector_cosines", "connector_agreement",
                                                   "connector_short_directions", "mconnector_triangle",
                                                   "mconnector_centre")]


def _config(tmp_path: Path, **sections) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    for name, over in sections.items():
        cfg.setdefault(name, {}).update(over)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.e2e
def test_connector_stages_end_to_end(tiny_copy):
    tmp_path = tiny_copy  # the shared tiny run built every connector and toy target
    for f in FIGS:
        assert (tmp_path / f).stat().st_size > 1000, f

    # real network on digits: the connector's max train loss is at most half the line's barrier
    path = pd.read_parquet(tmp_path / CON / "path.parquet")
    tr = path[path.split == "train"]
    line, conn = tr[tr.path == "line"].sort_values("t"), tr[tr.path == "connector"].sort_values("t")
    barrier = line.loss.max() - max(line.loss.iloc[0], line.loss.iloc[-1])
    assert barrier > 0.3
    assert conn.loss.max() <= 0.5 * barrier, (conn.loss.max(), barrier)
    # the connector meets its endpoints; agreement with each endpoint is 1 there
    assert conn.loss.iloc[0] == pytest.approx(line.loss.iloc[0], rel=1e-5)
    te = path[(path.split == "test") & (path.path == "connector")].sort_values("t")
    assert te.agree_a.iloc[0] == 1.0 and te.agree_b.iloc[-1] == 1.0
    assert te.agree_a.iloc[-1] < 1.0

    cos = pd.read_parquet(tmp_path / CON / "cosines.parquet")
    assert (cos[cos.i == cos.j].cosine - 1).abs().max() < 1e-5
    short = pd.read_parquet(tmp_path / CON / "short_directions.parquet")
    assert short.node.nunique() == 5 and short.start.nunique() == 2  # replicates: one row per node, start, rank
    per_node = short.groupby(["node", "start"])
    assert (per_node["short"].sum() == per_node["short_count"].first()).all()  # the count is of the listed values
    assert (((short.eigenvalue > short.threshold) & short.eigenvalue_converged) == short.short).all()
    assert {"converged", "saturated", "n_converged", "residual", "bn_policy"} <= set(short.columns)
    centre = pd.read_parquet(tmp_path / f"{BASE}/mconnectors/default/centre-seeds0-1-2/centre.parquet")
    assert sorted(centre.n.unique()) == [1, 3] and centre.start.nunique() == 2
    surface = pd.read_parquet(tmp_path / f"{BASE}/mconnectors/default/seeds0-1-2/surface.parquet")
    assert set(surface.surface) == {"flat", "mconnector"}
    # at the three corners both surfaces are the optima themselves
    corners = surface[(surface[["w0", "w1", "w2"]] == 1.0).any(axis=1) & (surface.split == "train")]
    piv = corners.pivot_table(index=["w0", "w1", "w2"], columns="surface", values="loss")
    assert (piv["flat"] - piv["mconnector"]).abs().max() < 1e-5

    # toy: transition at d = s and a connector far below the line
    hp = pd.read_parquet(tmp_path / f"{TOY}/hyperplanes.parquet")
    rel = hp.assign(r=hp.final_loss / hp.start_loss).groupby("d")["r"].max()
    s = int(hp.s.iloc[0])
    assert rel[rel.index <= s // 2].min() > 0.02 and rel[rel.index > s].max() < 1e-2
    summ = pd.read_parquet(tmp_path / f"{TOY}/tunnel_summary.parquet").iloc[0]
    assert summ.connector_max < 0.5 * summ.line_max

    # editing the short-direction threshold reruns only what depends on it
    cfg = _config(tmp_path, connectors={**yaml.safe_load(TINY.read_text())["connectors"],
                                        "short_directions": {"threshold": 2.0, "top_k": 8, "iters": 10, "samples": 100}})
    jobs = planned_jobs(snakemake(tmp_path, "-n", *FIGS, configfile=cfg))
    assert set(jobs) == {"connector_short_directions", "mconnector_centre", "plot_connectors"}, jobs
