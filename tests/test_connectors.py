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
    # counted: converged and above the threshold, or any value of a saturated start (all above it)
    assert (((short.eigenvalue > short.threshold) & (short.eigenvalue_converged | short.saturated)) == short.short).all()
    assert {"converged", "saturated", "n_converged", "residual", "bn_policy"} <= set(short.columns)
    centre = pd.read_parquet(tmp_path / f"{BASE}/mconnectors/default/centre-seeds0-1-2/centre.parquet")
    assert sorted(centre.n.unique()) == [1, 3] and centre.start.nunique() == 2
    surface = pd.read_parquet(tmp_path / f"{BASE}/mconnectors/default/seeds0-1-2/surface.parquet")
    assert set(surface.surface) == {"flat", "mconnector"}
    assert set(surface.seeds) == {"0-1-2"} and set(surface.variant) == {"sampled"}  # what the scorecard reads
    # matched-loss controls: a line point at the mid node's (each centre's) train loss, counted with the same starts
    ctrl = pd.read_parquet(tmp_path / CON / "short_matched.parquet")
    assert ctrl.start.nunique() == 2 and ctrl.t.iloc[0] == 0.5 and 0 <= ctrl.t_line.iloc[0] <= 0.5
    assert {"node_train_loss", "control_train_loss", "matched", "short_count"} <= set(ctrl.columns)
    if ctrl.matched.iloc[0]:
        assert abs(ctrl.control_train_loss.iloc[0] / ctrl.node_train_loss.iloc[0] - 1) <= ctrl.rtol.iloc[0]
    cm = pd.read_parquet(tmp_path / f"{BASE}/mconnectors/default/centre-seeds0-1-2/centre_matched.parquet")
    assert sorted(cm.n.unique()) == [3] and cm.start.nunique() == 2  # n = 1 is its own control
    card = pd.read_parquet(tmp_path / "results/scorecard.parquet").set_index("claim")
    for claim in ("mconnector_low_loss", "mconnector_centre_low_loss", "short_directions_mid_path_matched",
                  "short_directions_with_m_matched"):
        assert card.loc[claim, "verdict"] != "not run", claim
    assert "connector variant sampled" in card.loc["connector_low_loss", "note"]
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


# ---- the sampled variant and the matched-loss control, on the toy and on a quadratic ---------------
def _toy_optima(n):
    import torch
    from losslab import wedge

    loss = wedge.WedgeLoss(60, 6, False, 0)
    return loss, wedge.train_optima(loss, n, 200, 0.05, 0, 3.0)


def test_sampled_connector_keeps_the_ends_moves_normal_to_the_line_and_lowers_the_path():
    import torch
    from losslab import connectors

    loss, (a, b) = _toy_optima(2)
    res = connectors.sampled_connector(loss, a, b, segments=6, d=None, steps=40, lr=0.05, seed=0)
    assert torch.equal(res.points[0], a) and torch.equal(res.points[-1], b)
    dev = res.points - connectors.line_points(a, b, res.t)
    u = (b - a) / (b - a).norm()
    assert (dev @ u).abs().max() < 1e-4  # every node moved inside its hyperplane normal to the line
    t = torch.linspace(0, 1, 61)
    with torch.no_grad():
        line, path = loss(connectors.line_points(a, b, t)), loss(connectors.polyline(res.t, res.points, t))
    assert path.max() < 0.5 * line.max() and res.status[1] == "ok"
    again = connectors.sampled_connector(loss, a, b, segments=6, d=None, steps=40, lr=0.05, seed=0)
    assert torch.equal(again.points, res.points)  # seeded: the same t are drawn


def test_sampled_m_connector_keeps_the_optima_and_lowers_the_surface():
    import torch
    from losslab import connectors

    loss, X = _toy_optima(3)
    res = connectors.sampled_m_connector(loss, X, resolution=2, d=20, steps=40, lr=0.05, seed=0)
    vertices = [k for k, w in enumerate(res.bary) if int((w > 0).sum()) == 1]
    assert torch.equal(res.points[vertices], res.bary[vertices].to(X.dtype) @ X)
    hull = connectors.hull_basis(X)
    assert ((res.points - res.bary.to(X.dtype) @ X) @ hull.T).abs().max() < 1e-4  # normal to the hull
    q = connectors.barycentric_grid(3, 8)
    with torch.no_grad():
        flat, surf = loss(q.to(X.dtype) @ X), loss(connectors.triangle_surface(res, q))
    assert surf.quantile(0.95) < flat.quantile(0.95)
    with pytest.raises(ValueError, match="3 optima"):
        connectors.sampled_m_connector(loss, torch.cat([X, X[:1] + 1]), resolution=2, d=None, steps=1, lr=0.1)


def test_matched_loss_point_finds_the_line_point_with_the_target_loss():
    import torch
    from losslab import connectors

    a, b = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    f = lambda v: (v ** 2).sum()  # noqa: E731  along the line: 4 t^2
    m = connectors.matched_loss_point(f, a, b, target=4 * 0.3 ** 2)
    assert m["matched"] and abs(m["t"] - 0.3) < 1e-3 and abs(m["loss"] - 0.36) < 0.36 * 1e-3
    assert torch.allclose(m["point"], torch.full((4,), m["t"], dtype=torch.float64))
    far = connectors.matched_loss_point(f, a, b, target=3.0)  # above the loss anywhere on t <= 0.5
    assert not far["matched"] and far["t"] == 0.5
