"""The scorecard's criteria on hand-made replicate tables: each claim holds, does not hold, is
inconclusive (its interval covers the threshold) or does not run; the docs quote the same criteria."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losslab import scorecard as sc

REPO = Path(__file__).resolve().parents[1]
PAIRS = [(0, 1), (0, 2), (1, 2)]


# ---- intervals and the verdict ------------------------------------------------------------
def test_t_interval_matches_the_textbook_formula():
    m, lo, hi = sc.t_interval([1.0, 2.0, 3.0])
    assert m == 2.0 and np.isclose(hi - m, 4.302652729911275 * 1.0 / np.sqrt(3))  # t_{0.975, 2} * s / sqrt(n)
    assert np.isnan(sc.t_interval([1.0])[1])  # one replicate: no interval


def test_welch_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = sum(lo <= 1.0 <= hi for _, lo, hi in (sc.welch_interval(rng.normal(1, 1, 6), rng.normal(0, 2, 5))
                                                for _ in range(2000)))
    assert 0.93 < hits / 2000 < 0.97


@pytest.mark.parametrize("lo, hi, side, expected", [
    (0.25, 0.3, "<", sc.FAILS), (0.01, 0.1, "<", sc.HOLDS), (0.1, 0.25, "<", sc.INCONCLUSIVE),
    (0.25, 0.4, ">", sc.HOLDS), (-0.1, 0.1, ">", sc.FAILS), (np.nan, np.nan, ">", sc.INCONCLUSIVE)])
def test_three_way_verdict(lo, hi, side, expected):
    assert sc.verdict(lo, hi, 0.2, side) == expected


# ---- each claim: holds, does not hold, inconclusive ---------------------------------------
def _curves(curve_barriers, line_barrier=1.9):
    return pd.DataFrame([{"path": p, "split": "train", "metric": "loss", "barrier": b, "kind": "bezier", "bends": 1,
                          "seed_a": a, "seed_b": c, "alignment": "none"}
                         for (a, c), cb in zip(PAIRS, curve_barriers)
                         for p, b in (("curve", cb), ("line", line_barrier))])


def test_curve_barrier():
    assert sc.curve_barrier(_curves([0.02, 0.03, 0.025]))["verdict"] == sc.HOLDS
    assert sc.curve_barrier(_curves([0.9, 1.0, 1.1]))["verdict"] == sc.FAILS
    assert sc.curve_barrier(_curves([0.02, 0.9, 0.3]))["verdict"] == sc.INCONCLUSIVE
    r = sc.curve_barrier(_curves([0.02]))
    assert r["verdict"] == sc.INCONCLUSIVE and r["n_replicates"] == 1 and "no interval" in r["note"]
    flat = sc.curve_barrier(_curves([0.0, 0.0, 0.0], line_barrier=0.05))  # no barrier to remove
    assert flat["n_replicates"] == 0 and "left out" in flat["note"] and flat["verdict"] == sc.INCONCLUSIVE
    assert sc.curve_barrier(None)["verdict"] == sc.NOT_RUN


def _ensemble(gaps):
    return pd.DataFrame([{"path": "curve", "split": "test", "t": t, "ensemble_accuracy": 0.98 + (g if t == 0.32 else -0.02),
                          "reference_accuracy": 0.98, "ensemble_loss": 0.07, "reference_loss": 0.07, "kind": "bezier",
                          "bends": 1, "seed_a": a, "seed_b": b, "alignment": "none"}
                         for (a, b), g in zip(PAIRS, gaps) for t in (0.0, 0.2, 0.32, 1.0)])


def test_ensemble_at_t_03():
    r = sc.ensemble_phi03(_ensemble([0.002, 0.0, 0.004]))
    assert r["verdict"] == sc.HOLDS and "t=0.32" in r["measured"] and "NLL difference" in r["measured"]
    assert sc.ensemble_phi03(_ensemble([-0.02, -0.025, -0.03]))["verdict"] == sc.FAILS
    assert sc.ensemble_phi03(_ensemble([-0.004, 0.0, -0.012]))["verdict"] == sc.INCONCLUSIVE


def _planes(below, at, s=5):
    return pd.DataFrame([{"s": s, "d": d, "plane": i, "start_loss": 1.0, "final_loss": v, "status": "ok"}
                         for d, vals in ((s - 1, below), (s, at)) for i, v in enumerate(vals)])


def test_hyperplanes_transition_at_s():
    assert sc.hyperplanes(_planes([1e-2, 8e-3, 9e-3, 1.2e-2], [1e-4, 8e-5, 2e-4, 1e-4]))["verdict"] == sc.HOLDS
    assert sc.hyperplanes(_planes([1e-2, 8e-3, 9e-3, 1.2e-2], [5e-3, 6e-3, 4e-3, 5e-3]))["verdict"] == sc.FAILS
    assert sc.hyperplanes(_planes([1e-2, 1e-4, 9e-3, 1e-5], [1e-4, 1e-2, 1e-6, 1e-3]))["verdict"] == sc.INCONCLUSIVE
    missing = sc.hyperplanes(_planes([1e-2], [1e-4]).query("d == 5"))
    assert missing["verdict"] == sc.INCONCLUSIVE and "must hold both" in missing["measured"]


def _cos(pairs):
    ts = [0.2, 0.4, 0.6, 0.8]
    rows = []
    for k, (within, across) in enumerate(pairs):
        for i, a in enumerate(ts):
            for j, b in enumerate(ts):
                c = 1.0 if i == j else (within if (a < 0.5) == (b < 0.5) else across)
                rows.append({"i": i, "j": j, "t_i": a, "t_j": b, "cosine": c, "seed_a": 0, "seed_b": k + 1})
    return pd.DataFrame(rows)


def test_connector_halves():
    assert sc.connector_halves(_cos([(0.85, 0.1), (0.8, 0.2), (0.9, 0.15)]))["verdict"] == sc.HOLDS
    assert sc.connector_halves(_cos([(0.85, 0.7), (0.8, 0.75), (0.9, 0.8)]))["verdict"] == sc.FAILS
    assert sc.connector_halves(_cos([(0.85, 0.1), (0.8, 0.7), (0.9, 0.5)]))["verdict"] == sc.INCONCLUSIVE


def _low_loss(connector_max, bezier_max=0.04):
    path = pd.DataFrame([{"path": "connector", "split": "train", "t": t, "loss": m if t == 0.5 else 0.03,
                          "seed_a": a, "seed_b": b} for (a, b), m in zip(PAIRS, connector_max) for t in (0, 0.5, 1)])
    along = pd.DataFrame([{"path": "curve", "split": "train", "t": t, "loss": bezier_max if t == 0.5 else 0.03,
                           "kind": "bezier", "seed_a": a, "seed_b": b, "alignment": "none"}
                          for (a, b) in PAIRS for t in (0, 0.5, 1)])
    return path, along


def test_connector_low_loss_against_the_bezier_curve():
    assert sc.connector_low_loss(*_low_loss([0.05, 0.06, 0.045]))["verdict"] == sc.HOLDS
    r = sc.connector_low_loss(*_low_loss([0.65, 0.5, 0.7]))
    assert r["verdict"] == sc.FAILS and r["effect"] > 10
    assert sc.connector_low_loss(*_low_loss([0.03, 0.2, 0.06]))["verdict"] == sc.INCONCLUSIVE
    assert sc.connector_low_loss(None, None)["verdict"] == sc.NOT_RUN


def _along(bezier_max=0.04, pairs=PAIRS):
    return pd.DataFrame([{"path": "curve", "split": "train", "t": t, "loss": bezier_max if t == 0.5 else 0.03,
                          "kind": "bezier", "seed_a": a, "seed_b": b, "alignment": "none"}
                         for (a, b) in pairs for t in (0, 0.5, 1)])


def _surface(triangles, variant="sampled"):
    """One m-connector per entry (seeds, losses over its grid), plus the flat simplex (ignored)."""
    rows = []
    for k, (seeds, losses) in enumerate(triangles):
        for i, v in enumerate(losses):
            for surf, loss in (("mconnector", v), ("flat", 2.0)):
                rows.append({"split": "train", "surface": surf, "loss": loss, "index": i, "seeds": seeds,
                             "source_file": f"tri{k}", "variant": variant, "resolution": 3, "d": 500,
                             "steps_per_node": 200})
    return pd.DataFrame(rows)


def test_mconnector_surface_low_loss_reads_the_95th_percentile_of_the_grid():
    low = [0.03] * 95 + [0.5] * 5  # a crease of 5 % of the grid: the 95th percentile stays low
    r = sc.mconnector_low_loss(_surface([("0-1-2", low), ("0-1-3", low), ("1-2-3", [0.05] * 100)]),
                               _along(pairs=[(0, 1), (0, 2), (1, 2), (1, 3)]))
    assert r["verdict"] == sc.HOLDS and r["n_replicates"] == 3
    assert "max 0.500" in r["measured"] and "95th percentile" in r["measured"] and "variant sampled" in r["note"]
    high = [0.03] * 80 + [0.9] * 20
    r = sc.mconnector_low_loss(_surface([("0-1-2", high), ("0-1-2", [0.03] * 80 + [0.85] * 20),
                                         ("0-1-2", [0.03] * 80 + [0.8] * 20)]), _along())
    assert r["verdict"] == sc.FAILS and r["effect"] > 10
    r = sc.mconnector_low_loss(_surface([("0-1-2", low), ("0-1-2", high)]), _along())
    assert r["verdict"] == sc.INCONCLUSIVE
    one = sc.mconnector_low_loss(_surface([("0-1-2", high)]), _along())  # the default: one triangle
    assert one["verdict"] == sc.INCONCLUSIVE and one["n_replicates"] == 1 and "no interval" in one["note"]
    assert "0.900" in one["measured"] and "Bezier max 0.040" in one["measured"]  # the loss beside the ratio
    assert sc.mconnector_low_loss(None, _along())["verdict"] == sc.NOT_RUN
    assert sc.mconnector_low_loss(_surface([("0-1-2", low)]), None)["verdict"] == sc.NOT_RUN


def _centres(losses, seeds="0-1-2-3"):
    return pd.DataFrame([{"n": n, "start": s, "short_count": 9, "centre_train_loss": loss,
                          "seeds": "-".join(seeds.split("-")[:n])}
                         for n, loss in zip((1, 2, 3, 4), [0.03] + list(losses)) for s in (0, 1)])


def test_mconnector_centre_low_loss():
    r = sc.mconnector_centre_low_loss(_centres([0.03, 0.05, 0.04]), _along())
    assert r["verdict"] == sc.HOLDS and r["n_replicates"] == 3 and "n=2: centre 0.030" in r["measured"]
    r = sc.mconnector_centre_low_loss(_centres([0.43, 0.66, 0.63]), _along())
    assert r["verdict"] == sc.FAILS and r["effect"] > 10
    assert sc.mconnector_centre_low_loss(_centres([0.02, 0.4, 0.05]), _along())["verdict"] == sc.INCONCLUSIVE
    one = sc.mconnector_centre_low_loss(_centres([0.43]).query("n <= 2"), _along())
    assert one["verdict"] == sc.INCONCLUSIVE and one["n_replicates"] == 1
    assert sc.mconnector_centre_low_loss(None, _along())["verdict"] == sc.NOT_RUN


def _short(mid_counts, ends=9, starts=(0, 1)):
    return pd.DataFrame([{"t": t, "short_count": (m + s) if t == 0.5 else ends, "seed_a": 0, "seed_b": k + 1, "start": s}
                         for k, m in enumerate(mid_counts) for s in starts for t in (0.0, 0.5, 1.0)])


def test_short_directions_mid_path():
    assert sc.short_mid_path(_short([20, 18, 22]))["verdict"] == sc.HOLDS
    r = sc.short_mid_path(_short([20, 18, 22]))
    assert r["n_replicates"] == 6  # 3 connectors x 2 Lanczos starts
    assert sc.short_mid_path(_short([5, 6, 4]))["verdict"] == sc.FAILS
    assert sc.short_mid_path(_short([2, 20, 0]))["verdict"] == sc.INCONCLUSIVE


def _centre(series):
    return pd.DataFrame([{"n": n, "short_count": c, "start": s} for s, counts in enumerate(series)
                         for n, c in zip((1, 2, 3, 4), counts)])


def test_short_directions_with_m():
    assert sc.short_with_m(_centre([[9, 20, 22, 23], [9, 19, 23, 24], [8, 21, 22, 25]]))["verdict"] == sc.HOLDS
    assert sc.short_with_m(_centre([[25, 20, 15, 10], [24, 19, 16, 9], [26, 21, 14, 11]]))["verdict"] == sc.FAILS
    assert sc.short_with_m(_centre([[9, 24, 22, 23], [20, 9, 24, 10], [24, 9, 10, 22]]))["verdict"] == sc.INCONCLUSIVE
    one = sc.short_with_m(_centre([[9, 24, 22, 23]]))
    assert one["verdict"] == sc.INCONCLUSIVE and one["n_replicates"] == 1


def _matched(control_counts, starts=(0, 1), matched=True):
    return pd.DataFrame([{"t": 0.5, "short_count": c + s, "seed_a": 0, "seed_b": k + 1, "start": s, "matched": matched,
                          "node_train_loss": 0.6, "t_line": 0.21, "control_train_loss": 0.61}
                         for k, c in enumerate(control_counts) for s in starts])


def test_short_directions_mid_path_against_a_matched_loss_control():
    short = _short([20, 18, 22])  # mid-path counts 20 + start, 18 + start, 22 + start
    r = sc.short_mid_path_matched(short, _matched([10, 9, 12]))
    assert r["verdict"] == sc.HOLDS and r["n_replicates"] == 6 and "line t=0.210" in r["measured"]
    assert sc.short_mid_path_matched(short, _matched([24, 23, 25]))["verdict"] == sc.FAILS
    assert sc.short_mid_path_matched(short, _matched([20, 10, 25]))["verdict"] == sc.INCONCLUSIVE
    none = sc.short_mid_path_matched(short, _matched([10, 9, 12], matched=False))
    assert none["verdict"] == sc.INCONCLUSIVE and none["n_replicates"] == 0 and "6 unmatched" in none["note"]
    assert sc.short_mid_path_matched(short, None)["verdict"] == sc.NOT_RUN


def _centre_matched(series):
    return pd.DataFrame([{"n": n, "start": s, "short_count": c, "matched": True, "centre_train_loss": 0.5,
                          "t_line": 0.2, "control_train_loss": 0.5}
                         for s, counts in enumerate(series) for n, c in zip((2, 3, 4), counts)])


def test_short_directions_with_m_against_matched_loss_controls():
    centre = _centre([[9, 20, 22, 25], [9, 20, 22, 25], [9, 20, 22, 25]])
    assert sc.short_with_m_matched(centre, _centre_matched([[18, 18, 18], [17, 16, 18], [18, 17, 17]]))["verdict"] \
        == sc.HOLDS  # the excess over the control grows with n
    assert sc.short_with_m_matched(centre, _centre_matched([[10, 20, 25], [11, 21, 26], [10, 22, 27]]))["verdict"] \
        == sc.FAILS  # the control grows faster: the excess shrinks
    assert sc.short_with_m_matched(centre, _centre_matched([[18, 18, 18], [10, 20, 25], [18, 17, 17]]))["verdict"] \
        == sc.INCONCLUSIVE
    one = sc.short_with_m_matched(centre.query("start == 0"), _centre_matched([[18, 18, 18]]))
    assert one["verdict"] == sc.INCONCLUSIVE and one["n_replicates"] == 1
    assert sc.short_with_m_matched(centre, None)["verdict"] == sc.NOT_RUN


def _widths(param, means, spread=0.5, seeds=(0, 1), directions=8, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"param": param, "value": float(v), "seed": s, "direction": k, "status": "ok",
                          "width": m + spread * rng.standard_normal(), "width_rel": 0.1}
                         for v, m in zip((1, 2, 3), means) for s in seeds for k in range(directions)])


@pytest.mark.parametrize("param, means, spread, verdict", [
    ("lr", [6.8, 8.2, 10.0], 0.5, sc.HOLDS), ("l2", [8.6, 8.2, 7.6], 0.3, sc.FAILS),
    ("dropout", [8.6, 8.6, 8.6], 2.0, sc.INCONCLUSIVE), ("batch_size", [8.9, 8.2, 7.7], 0.3, sc.HOLDS),
    ("batch_size", [7.7, 8.2, 8.9], 0.3, sc.FAILS)])
def test_tunnel_trends(param, means, spread, verdict):
    r = sc.tunnel_trend(_widths(param, means, spread), param)
    assert r["verdict"] == verdict and r["n_replicates"] == 2 and "relative" in r["measured"]


def test_tunnel_trend_is_deterministic_and_skips_diverged_values():
    w = _widths("lr", [6.8, 8.2, 10.0])
    assert sc.tunnel_trend(w, "lr") == sc.tunnel_trend(w, "lr")
    w.loc[w.value == 3.0, "status"] = "diverged"
    assert "3:" not in sc.tunnel_trend(w, "lr")["measured"]
    assert sc.tunnel_trend(w[w.value == 1.0], "lr")["verdict"] == sc.NOT_RUN  # one value: nothing to correlate


def _swa(high_lr_gaps):
    return pd.DataFrame([{"split": "test", "status": "ok", "schedule": sched, "lr": lr, "seed": seed,
                          "swa_accuracy": sa - (gap if lr == 0.1 else 0.0), "ensemble_accuracy": ea}
                         for seed, gap in enumerate(high_lr_gaps) for sched in ("constant", "cyclic")
                         for lr, sa, ea in ((0.01, 0.98, 0.98), (0.1, 0.83, 0.83), (0.3, 0.1, 0.1))])


def test_swa_behind_at_high_lr():
    r = sc.swa_high_lr(_swa([0.2, 0.25, 0.18]))
    assert r["verdict"] == sc.HOLDS and "lr 0.1" in r["measured"]  # 0.3 is at chance: not "learning"
    assert sc.swa_high_lr(_swa([0.0, 0.005, -0.01]))["verdict"] == sc.FAILS
    assert sc.swa_high_lr(_swa([0.0, 0.2, 0.05]))["verdict"] == sc.INCONCLUSIVE


def test_score_lists_every_claim_once_and_not_run_stages():
    card = sc.score({"curves_summary": _curves([0.02, 0.03, 0.025])})
    assert list(card.claim) == list(sc.CLAIMS) and list(card.columns) == sc.COLUMNS
    row = card.set_index("claim").loc["curve_barrier"]
    assert row.verdict == sc.HOLDS and row.ci_low < row.effect < row.ci_high < 0.2 and row.n_replicates == 3
    assert (card[card.claim != "curve_barrier"]["verdict"] == sc.NOT_RUN).all()
    page = sc.html(card)
    assert page.count("<tr") == len(sc.CLAIMS) + 1 and f"1 holds, 0 does not hold, 0 inconclusive, {len(card) - 1} not run" in page
    assert f"[{sc.fmt(row.ci_low)}, {sc.fmt(row.ci_high)}]" in page
    rst = sc.landing_rst(card, "intro")
    assert rst.startswith("intro") and f"{sc.fmt(row.ci_low)}, {sc.fmt(row.ci_high)}" in rst and "`Curves`_" in rst


# ---- one source: the docs quote the code's criteria ----------------------------------------
def test_docs_quote_the_criteria_of_the_code():
    text = (REPO / "docs" / "stages.md").read_text()
    block = re.search(r"<!-- criteria: start -->\n(.*?)<!-- criteria: end -->", text, re.S)
    assert block and block.group(1) == sc.criteria_markdown(), \
        "docs/stages.md's criteria table is stale: python -m losslab.scorecard"


def test_docs_scorecard_is_a_rendering_of_a_card():
    text = (REPO / "docs" / "stages.md").read_text()
    block = re.search(r"<!-- scorecard: start -->\n(.*?)<!-- scorecard: end -->", text, re.S).group(1)
    claims = re.findall(r"^\| `([^`]+)` \|", block, re.M)
    verdicts = re.findall(r"\*\*([a-z ]+)\*\* \|$", block, re.M)
    assert claims == list(sc.CLAIMS) and set(verdicts) <= set(sc.VERDICTS) and len(verdicts) == len(claims)
    counts = re.match(r"(\d+) holds, (\d+) does not hold, (\d+) inconclusive, (\d+) not run", block)
    assert counts and [int(c) for c in counts.groups()] == [verdicts.count(v) for v in sc.VERDICTS]



def test_docs_claims_matrix_is_a_rendering_of_a_card_over_several_experiments():
    text = (REPO / "docs" / "stages.md").read_text()
    block = re.search(r"<!-- matrix: start -->\n(.*?)<!-- matrix: end -->", text, re.S)
    assert block, "docs/stages.md has no claims matrix: run presets/claims.yaml and render it with --matrix"
    block = block.group(1)
    head = re.search(r"^\| claim \|(.*)\| summary \|$", block, re.M)
    exps = re.findall(r"`([^`]+)`", head.group(1))
    assert len(exps) >= 5 and "toy_wedge" in exps          # four experiments and the shared toy column
    rows = re.findall(r"^\| `([^`]+)` \|(.*)\|$", block, re.M)
    assert [c for c, _ in rows] == list(sc.CLAIMS)
    for claim, rest in rows:
        cells = [c.strip() for c in rest.split("|")]
        assert len(cells) == len(exps) + 1
        scored = [c for c in cells[:-1] if c and not c.startswith(sc.NOT_RUN)]
        assert all(c.split(":")[0] in sc.VERDICTS for c in scored), claim
        k = sum(c.startswith(sc.HOLDS + ":") for c in scored)
        assert cells[-1] == f"holds in {k} of {len(scored)} experiment" + ("" if len(scored) == 1 else "s"), claim
    counts = re.match(r"(\d+) holds, (\d+) does not hold, (\d+) inconclusive, (\d+) not run", block)
    cells = [c.strip() for _, rest in rows for c in rest.split("|")[:-1] if c.strip()]
    assert counts and [int(n) for n in counts.groups()] == [sum(c.startswith(v + ":") for c in cells) for v in sc.VERDICTS]
