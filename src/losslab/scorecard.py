"""The reproduction scorecard: each claim of the two seed works that a run covers, measured.

:func:`score` reads the summary tables of a finished run (a table is ``None`` when its stage did
not run) and returns one row per claim: the seed's statement, the criterion (fixed here, before
any result, and never tuned toward a verdict), what was measured, and the verdict ``holds``,
``does not hold`` or ``not run``. :func:`html` renders the report page. Reads tables only.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

GARIPOV = "Garipov, Izmailov et al. (mode connectivity)"
FORT = "Fort & Jastrzebski (large-scale structure)"
HOLDS, FAILS, NOT_RUN = "holds", "does not hold", "not run"


def _row(claim, source, statement, criterion, verdict=NOT_RUN, measured="", value=math.nan):
    return {"claim": claim, "source": source, "statement": statement, "criterion": criterion,
            "measured": measured, "value": float(value), "verdict": verdict}


def _verdict(ok: bool) -> str:
    return HOLDS if ok else FAILS


def curve_barrier(summary: pd.DataFrame | None) -> dict:
    row = _row("curve_barrier", GARIPOV, "a low-loss curve joins two optima: its barrier is far below the straight line's",
               "every curve's train-loss barrier <= 0.2 x its line's, and the line's barrier > 0.1")
    if summary is None or summary.empty:
        return row
    s = summary[(summary.metric == "loss") & (summary.split == "train") & (summary.get("alignment", "none") == "none")]
    parts, ratios, line_ok = [], [], True
    for (kind, bends, a, b), g in s.groupby(["kind", "bends", "seed_a", "seed_b"], sort=True):
        line = float(g.loc[g.path == "line", "barrier"].iloc[0])
        curve = float(g.loc[g.path == "curve", "barrier"].iloc[0])
        ratios.append(curve / line if line > 0 else math.inf)
        line_ok &= line > 0.1
        parts.append(f"{kind}{bends} seeds {a}-{b}: curve {curve:.3f}, line {line:.3f}")
    ok = line_ok and max(ratios) <= 0.2
    return {**row, "verdict": _verdict(ok), "measured": "; ".join(parts), "value": max(ratios)}


def ensemble_phi03(ensemble: pd.DataFrame | None) -> dict:
    row = _row("ensemble_phi_0.3", GARIPOV, "the ensemble of w1 with phi(0.3) on the curve is about as accurate as the "
               "ensemble of two independent networks (blog Figure 8)",
               "test accuracy of w1 + phi(t closest to 0.3) >= that of w1 + w2 minus 0.5 percentage points, "
               "for every curve")
    if ensemble is None or ensemble.empty:
        return row
    e = ensemble[(ensemble.split == "test") & (ensemble.path == "curve") & (ensemble.get("alignment", "none") == "none")]
    parts, gaps = [], []
    for (kind, bends, a, b), g in e.groupby(["kind", "bends", "seed_a", "seed_b"], sort=True):
        r = g.iloc[(g["t"] - 0.3).abs().argmin()]
        gaps.append(r["ensemble_accuracy"] - r["reference_accuracy"])
        parts.append(f"{kind}{bends} seeds {a}-{b}: t={r['t']:.2f} {100 * r['ensemble_accuracy']:.1f}% vs "
                     f"independent {100 * r['reference_accuracy']:.1f}%")
    if not gaps or not np.isfinite(gaps).all():
        return {**row, "measured": "no classification accuracy"}
    return {**row, "verdict": _verdict(min(gaps) >= -0.005), "measured": "; ".join(parts), "value": min(gaps)}


def hyperplanes(table: pd.DataFrame | None) -> dict:
    row = _row("toy_hyperplanes", FORT, "optimisation in a random d-dimensional hyperplane of the wedge model reaches "
               "zero loss if and only if d >= s", "final/start loss < 0.01 on every plane with d >= s, and > 0.01 on "
               "every plane with d < s")
    if table is None or table.empty:
        return row
    ratio = table["final_loss"] / table["start_loss"]
    s = int(table["s"].iloc[0])
    above, below = ratio[table["d"] >= s], ratio[table["d"] < s]
    ok = (above < 0.01).all() and (below > 0.01).all() and len(above) and len(below)
    return {**row, "verdict": _verdict(bool(ok)), "value": float(above.max()) if len(above) else math.nan,
            "measured": f"s = {s}: largest ratio for d >= s {above.max():.2g}, smallest for d < s {below.min():.2g}"}


def connector_halves(cosines: pd.DataFrame | None) -> dict:
    row = _row("connector_halves", FORT, "the connector's deviations from the line align within each half of the path "
               "(two wedges), not across", "mean cosine between nodes of one half >= 0.5 and at least 0.3 above the "
               "mean across halves")
    if cosines is None or cosines.empty:
        return row
    c = cosines[cosines.i != cosines.j]
    half = lambda t: np.sign(t - 0.5)  # noqa: E731
    same = c[(half(c.t_i) == half(c.t_j)) & (half(c.t_i) != 0)]
    across = c[half(c.t_i) * half(c.t_j) < 0]
    if same.empty or across.empty:
        return {**row, "measured": "too few nodes for two halves"}
    w, x = float(same.cosine.mean()), float(across.cosine.mean())
    return {**row, "verdict": _verdict(w >= 0.5 and w - x >= 0.3), "value": w - x,
            "measured": f"within halves {w:.2f}, across {x:.2f}"}


def short_mid_path(short: pd.DataFrame | None) -> dict:
    row = _row("short_directions_mid_path", FORT, "there are more short directions in the middle of the connector "
               "than at the optima", "short-direction count at the node nearest t = 0.5 > the mean count at t = 0 and 1")
    if short is None or short.empty:
        return row
    counts = short.groupby("t")["short_count"].first()
    mid = counts.iloc[np.abs(counts.index - 0.5).argmin()]
    ends = counts.loc[[counts.index.min(), counts.index.max()]].mean()
    return {**row, "verdict": _verdict(mid > ends), "value": float(mid - ends),
            "measured": f"{mid} at t = {counts.index[np.abs(counts.index - 0.5).argmin()]:.2f}, {ends:.1f} at the optima"}


def short_with_m(centre: pd.DataFrame | None) -> dict:
    row = _row("short_directions_with_m", FORT, "the centre of an m-connector between more optima has more short "
               "directions", "count non-decreasing in n, and larger at the largest n than at n = 1")
    if centre is None or centre.empty:
        return row
    counts = centre.groupby("n")["short_count"].first().sort_index()
    ok = bool((counts.diff().dropna() >= 0).all() and counts.iloc[-1] > counts.iloc[0])
    return {**row, "verdict": _verdict(ok), "value": float(counts.iloc[-1] - counts.iloc[0]),
            "measured": ", ".join(f"n={n}: {c}" for n, c in counts.items())}


TUNNEL_CLAIMS = {"lr": (+1, "grows with the learning rate"), "l2": (+1, "grows with L2 regularisation"),
                 "dropout": (+1, "grows with dropout"), "batch_size": (-1, "shrinks with the batch size")}


def tunnel_trend(summary: pd.DataFrame | None, param: str) -> dict:
    sign, words = TUNNEL_CLAIMS[param]
    row = _row(f"tunnel_width_{param}", FORT, f"the radial tunnel width around an optimum {words}",
               f"mean width strictly {'increasing' if sign > 0 else 'decreasing'} over the swept values (non-diverged)")
    if summary is None or summary.empty:
        return row
    s = summary[(summary.param == param) & (summary.status != "diverged")].sort_values("value")
    if len(s) < 2:
        return {**row, "measured": f"fewer than two {param} values swept"}
    steps = np.diff(s["width_mean"].to_numpy()) * sign
    return {**row, "verdict": _verdict(bool((steps > 0).all())), "value": float(steps.min()),
            "measured": ", ".join(f"{v:g}: {w:.2f}" for v, w in zip(s["value"], s["width_mean"]))}


def swa_high_lr(summary: pd.DataFrame | None) -> dict:
    row = _row("swa_high_lr", FORT, "at a high learning rate SWA falls behind the snapshot ensemble",
               "at the largest lr whose ensemble test accuracy is >= 0.5, SWA's test accuracy (mean over seeds) is "
               "below the ensemble's by more than 2 percentage points, for every schedule")
    if summary is None or summary.empty:
        return row
    t = summary[(summary.split == "test") & (summary.status == "ok")]
    m = t.groupby(["schedule", "lr"])[["swa_accuracy", "ensemble_accuracy"]].mean().reset_index()
    learning = m[m.ensemble_accuracy >= 0.5]
    if learning.empty:
        return {**row, "measured": "no learning rate where the ensemble learns"}
    lr = learning["lr"].max()
    at = m[m.lr == lr]
    gaps = at["ensemble_accuracy"] - at["swa_accuracy"]
    parts = [f"{r.schedule} lr {lr:g}: SWA {100 * r.swa_accuracy:.1f}% vs ensemble {100 * r.ensemble_accuracy:.1f}%"
             for r in at.itertuples()]
    return {**row, "verdict": _verdict(bool((gaps > 0.02).all())), "value": float(gaps.min()), "measured": "; ".join(parts)}


def score(tables: dict) -> pd.DataFrame:
    """Every claim's row, from ``tables`` (name -> DataFrame or None): ``curves_summary``,
    ``curves_ensemble``, ``hyperplanes``, ``cosines``, ``short``, ``centre``, ``tunnels``, ``swa``."""
    g = tables.get
    rows = [curve_barrier(g("curves_summary")), ensemble_phi03(g("curves_ensemble")), hyperplanes(g("hyperplanes")),
            connector_halves(g("cosines")), short_mid_path(g("short")), short_with_m(g("centre"))]
    rows += [tunnel_trend(g("tunnels"), p) for p in TUNNEL_CLAIMS]
    rows.append(swa_high_lr(g("swa")))
    return pd.DataFrame(rows)


def html(card: pd.DataFrame, title: str = "losslab reproduction scorecard") -> str:
    """A self-contained HTML page of the scorecard."""
    colour = {HOLDS: "#d9f2d9", FAILS: "#f8d7d7", NOT_RUN: "#eeeeee"}
    esc = lambda v: str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    rows = "\n".join(
        f"<tr style='background:{colour.get(r.verdict, '#fff')}'><td>{esc(r.claim)}</td><td>{esc(r.source)}</td>"
        f"<td>{esc(r.statement)}</td><td>{esc(r.measured)}</td><td>{esc(r.criterion)}</td><td><b>{esc(r.verdict)}</b></td></tr>"
        for r in card.itertuples())
    counts = card["verdict"].value_counts().to_dict()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in (HOLDS, FAILS, NOT_RUN))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title></head><body>"
            f"<h1>{esc(title)}</h1><p>{summary}. Criteria are fixed in losslab/scorecard.py, never tuned toward a "
            "verdict.</p><table border='1' cellpadding='4' style='border-collapse:collapse;font-family:sans-serif;"
            "font-size:13px'><tr><th>claim</th><th>seed work</th><th>statement</th><th>measured</th><th>criterion</th>"
            f"<th>verdict</th></tr>\n{rows}\n</table></body></html>\n")
