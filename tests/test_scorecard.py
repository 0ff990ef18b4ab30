"""The scorecard's criteria on hand-made tables: each claim can hold, fail, or not run."""
import pandas as pd
import pytest

from losslab import scorecard as sc


def _curves(curve_barrier, line_barrier=1.9):
    return pd.DataFrame([{"path": p, "split": "train", "metric": "loss", "barrier": b, "kind": "bezier", "bends": 1,
                          "seed_a": 0, "seed_b": 1, "alignment": "none"}
                         for p, b in (("curve", curve_barrier), ("line", line_barrier))])


def test_curve_barrier():
    assert sc.curve_barrier(_curves(0.02))["verdict"] == sc.HOLDS
    assert sc.curve_barrier(_curves(0.9))["verdict"] == sc.FAILS
    assert sc.curve_barrier(_curves(0.0, line_barrier=0.05))["verdict"] == sc.FAILS  # no real barrier to beat
    assert sc.curve_barrier(None)["verdict"] == sc.NOT_RUN


def test_ensemble_at_t_03():
    rows = [{"path": "curve", "split": "test", "t": t, "ensemble_accuracy": a, "reference_accuracy": 0.98,
             "kind": "bezier", "bends": 1, "seed_a": 0, "seed_b": 1, "alignment": "none"}
            for t, a in ((0.0, 0.95), (0.2, 0.97), (0.32, 0.985), (1.0, 0.98))]
    r = sc.ensemble_phi03(pd.DataFrame(rows))
    assert r["verdict"] == sc.HOLDS and "t=0.32" in r["measured"]  # the point nearest 0.3
    rows[2]["ensemble_accuracy"] = 0.97
    assert sc.ensemble_phi03(pd.DataFrame(rows))["verdict"] == sc.FAILS


def test_hyperplanes_iff():
    t = pd.DataFrame({"s": 5, "d": [3, 4, 5, 6], "start_loss": 1.0, "final_loss": [0.2, 0.1, 1e-4, 1e-5]})
    assert sc.hyperplanes(t)["verdict"] == sc.HOLDS
    t.loc[1, "final_loss"] = 1e-3  # succeeds below s: not "only if"
    assert sc.hyperplanes(t)["verdict"] == sc.FAILS


def _cos(within, across):
    ts = [0.2, 0.4, 0.6, 0.8]
    rows = []
    for i, a in enumerate(ts):
        for j, b in enumerate(ts):
            c = 1.0 if i == j else (within if (a < 0.5) == (b < 0.5) else across)
            rows.append({"i": i, "j": j, "t_i": a, "t_j": b, "cosine": c})
    return pd.DataFrame(rows)


def test_connector_halves():
    assert sc.connector_halves(_cos(0.85, 0.1))["verdict"] == sc.HOLDS
    assert sc.connector_halves(_cos(0.85, 0.7))["verdict"] == sc.FAILS


def test_short_directions():
    short = pd.DataFrame({"t": [0.0, 0.5, 1.0], "short_count": [9, 20, 9]})
    assert sc.short_mid_path(short)["verdict"] == sc.HOLDS
    assert sc.short_mid_path(short.assign(short_count=[9, 8, 9]))["verdict"] == sc.FAILS
    centre = pd.DataFrame({"n": [1, 2, 3], "short_count": [9, 20, 22]})
    assert sc.short_with_m(centre)["verdict"] == sc.HOLDS
    assert sc.short_with_m(centre.assign(short_count=[9, 20, 18]))["verdict"] == sc.FAILS


@pytest.mark.parametrize("param, widths, verdict", [("lr", [6.8, 8.2, 10.0], sc.HOLDS), ("l2", [8.2, 8.0, 7.6], sc.FAILS),
                                                    ("batch_size", [8.9, 8.2, 7.7], sc.HOLDS)])
def test_tunnel_trends(param, widths, verdict):
    t = pd.DataFrame({"param": param, "value": [1.0, 2.0, 3.0], "width_mean": widths, "status": "ok"})
    assert sc.tunnel_trend(t, param)["verdict"] == verdict


def test_swa_behind_at_high_lr():
    rows = [{"split": "test", "status": "ok", "schedule": s, "lr": lr, "seed": 0, "swa_accuracy": sa,
             "ensemble_accuracy": ea}
            for s in ("constant", "cyclic")
            for lr, sa, ea in ((0.01, 0.98, 0.98), (0.1, 0.58, 0.83), (0.3, 0.1, 0.1))]
    r = sc.swa_high_lr(pd.DataFrame(rows))
    assert r["verdict"] == sc.HOLDS and "lr 0.1" in r["measured"]  # 0.3 is at chance: not "learning"
    rows[4]["swa_accuracy"] = 0.83  # cyclic at lr 0.1: SWA keeps up
    assert sc.swa_high_lr(pd.DataFrame(rows))["verdict"] == sc.FAILS


def test_score_lists_every_claim_and_not_run_stages():
    card = sc.score({"curves_summary": _curves(0.02)})
    assert len(card) == 11 and card.set_index("claim").loc["curve_barrier", "verdict"] == sc.HOLDS
    assert (card[card.claim != "curve_barrier"]["verdict"] == sc.NOT_RUN).all()
    page = sc.html(card)
    assert page.count("<tr") == 12 and "1 holds, 0 does not hold, 10 not run" in page
