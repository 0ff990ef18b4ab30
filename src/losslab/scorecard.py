"""The reproduction scorecard: each claim of the two seed works, measured over replicates.

Every claim is a :class:`Claim`, fixed here before any run: the effect size that states it, the
threshold the effect must clear, the side of the threshold on which the claim holds, the unit of
replication and the reason for the threshold. :func:`score` reads the summary tables of a finished
run (a table is ``None`` when its stage did not run) and returns one row per claim with the effect,
its 95 % interval over the replicates and a three-way verdict:

* ``holds``: the interval lies on the claim's side of the threshold;
* ``does not hold``: the interval lies on the other side;
* ``inconclusive``: the interval covers the threshold (or there is one replicate, so no interval).

The same :data:`CLAIMS` and the same card render the Parquet table, the HTML page, the report's
landing page and the tables quoted in docs/stages.md (``python -m losslab.scorecard``), so they
cannot disagree. Reads tables only.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

GARIPOV = "Garipov, Izmailov et al. (mode connectivity)"
FORT = "Fort & Jastrzebski (large-scale structure)"
HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_RUN)
LEVEL = 0.95
N_BOOT = 2000
BOOT_SEED = 0


@dataclass(frozen=True)
class Claim:
    """A claim and its test: holds when the interval of ``effect`` lies ``side`` of ``threshold``."""
    name: str
    source: str
    statement: str
    effect: str      # the effect size, in words
    threshold: float
    side: str        # ">": holds above the threshold; "<": holds below
    unit: str        # the unit of replication
    interval: str    # how the 95 % interval is made
    reason: str      # why this threshold
    replicates: str  # the config keys that set the number of replicates

    @property
    def criterion(self) -> str:
        where = "above" if self.side == ">" else "below"
        return f"95 % interval of {self.effect} {where} {self.threshold:g}"


T_MEAN = "Student t interval of the mean over replicates"
WELCH = "Welch t interval of the difference of the two groups' means"
BOOT = f"percentile bootstrap over replicates ({N_BOOT} resamples, seed {BOOT_SEED})"
HIER_BOOT = (f"hierarchical percentile bootstrap ({N_BOOT} resamples, seed {BOOT_SEED}): seeds within each swept "
             "value, then directions within each seed")

CLAIMS: dict[str, Claim] = {c.name: c for c in [
    Claim("curve_barrier", GARIPOV, "a low-loss curve joins two optima: its barrier is far below the straight line's",
          "curve train-loss barrier / line train-loss barrier (the larger over the curve kinds of a pair)", 0.2, "<",
          "pair of endpoints", T_MEAN,
          "'far below' is read as removing at least 80 % of the line's barrier; Garipov et al. report curves whose "
          "loss is nearly constant, so 0.2 is generous to the claim. Pairs whose line has no barrier (< 0.1) cannot "
          "test it and are left out.", "curves.pairs"),
    Claim("ensemble_phi_0.3", GARIPOV, "the ensemble of w1 with phi(0.3) on the curve is about as accurate as the "
          "ensemble of two independent networks (blog Figure 8)",
          "test accuracy of w1 + phi(t nearest 0.3) minus that of w1 + w2 (Bezier curves; NLL difference reported)",
          -0.005, ">", "pair of endpoints", T_MEAN,
          "'about as accurate' allows a loss of half a percentage point: the blog's curve ensemble is within a few "
          "tenths of a point of the independent one, and half a point is several test images on every dataset "
          "losslab ships.", "curves.pairs"),
    Claim("toy_hyperplanes", FORT, "optimisation in a random d-dimensional hyperplane of the wedge model reaches "
          "zero loss if and only if d >= s",
          "log10 of the geometric-mean final/start loss ratio at d = s-1 over that at d = s", 1.0, ">",
          "random hyperplane (and start)", WELCH,
          "after a finite number of steps no loss is exactly zero, so 'iff' is tested as its observable consequence: "
          "a jump of at least one order of magnitude in the reached loss exactly where d crosses s.",
          "wedge.hyperplanes.planes"),
    Claim("connector_halves", FORT, "the connector's deviations from the line align within each half of the path "
          "(two wedges), not across",
          "mean cosine of deviations between nodes of one half minus that across halves", 0.3, ">",
          "connector (pair of optima)", T_MEAN,
          "the paper's Figure 4 shows two blocks of high cosine with low cosine between them; a gap of 0.3 is a "
          "clearly visible block structure on its colour scale, far above the near-zero cosines of random "
          "directions in many dimensions.", "connectors.pairs"),
    Claim("connector_low_loss", FORT, "the normal-hyperplane connector is a low-loss path: every point along it is "
          "a low-loss point",
          "largest train loss along the connector / largest train loss along the Bezier curve on the same pair", 2.0,
          "<", "pair of optima (with a Bezier curve)", T_MEAN,
          "the Bezier curve is the low-loss path losslab can reach on the same endpoints; a connector within a "
          "factor two of it is low-loss on the same scale.", "connectors.pairs, curves.pairs"),
    Claim("mconnector_low_loss", FORT, "the m-connector between three optima is a low-loss surface",
          "95th percentile of the train loss over the m-connector surface's evaluated grid / largest train loss "
          "along the Bezier curves between its optima (the maximum reported beside)", 2.0, "<",
          "m-connector (triangle of optima)", T_MEAN,
          "as for connector_low_loss, the Bezier curves are the low-loss paths losslab reaches between the same "
          "optima, and a surface within a factor two of them is low-loss on the same scale; the 95th percentile "
          "lets the few grid points of a sharp crease between nodes pass but not a high region (5 % of the grid or "
          "more), which the claim 'a low-loss subspace' excludes.", "connectors.mconnector.seeds, curves.pairs"),
    Claim("mconnector_centre_low_loss", FORT, "the optimised centre of n optima is a low-loss point",
          "train loss at the optimised centre of n >= 2 optima / largest train loss along the Bezier curves between "
          "those optima", 2.0, "<", "centre of n optima (each n >= 2)", T_MEAN,
          "the short-direction counts at the centres are read as properties of low-loss points; a centre within a "
          "factor two of the Bezier curves between its optima is low-loss on the same scale as connector_low_loss.",
          "connectors.mconnector.centre_n, curves.pairs"),
    Claim("short_directions_mid_path", FORT, "there are more short directions in the middle of the connector "
          "than at the optima",
          "short-direction count at the node nearest t = 0.5 minus the mean count at t = 0 and 1", 0.0, ">",
          "connector x Lanczos start", T_MEAN,
          "the paper claims a direction (more), not a size, so the threshold is no difference.",
          "connectors.pairs, connectors.short_directions.starts"),
    Claim("short_directions_with_m", FORT, "the centre of an m-connector between more optima has more short "
          "directions", "Spearman rank correlation of the short-direction count with n, the number of optima", 0.0,
          ">", "Lanczos start (each a whole series over n)", BOOT,
          "the paper claims a monotone trend, not a size, so the threshold is no correlation.",
          "connectors.short_directions.starts"),
    Claim("short_directions_mid_path_matched", FORT, "there are more short directions in the middle of the "
          "connector than at a point of the straight line with the same train loss",
          "short-direction count at the connector node nearest t = 0.5 minus that at the point of the line from "
          "optimum a toward b (t <= 0.5) whose train loss matches the node's (within 5 %)", 0.0, ">",
          "connector x Lanczos start", T_MEAN,
          "curvature grows with the loss, and a connector's mid-path node can sit far above the optima in loss (15-25 "
          "times with the paper's algorithm at d = 500); the line point at the node's loss shows how many short directions that loss level brings alone, so the "
          "claim, which names a direction, must exceed it: the threshold is no difference. Unmatched controls are "
          "left out.", "connectors.pairs, connectors.short_directions.starts"),
    Claim("short_directions_with_m_matched", FORT, "the centre of an m-connector between more optima has more short "
          "directions than a point of the straight line with the same train loss, the more so the more optima",
          "Spearman rank correlation with n (n >= 2) of the centre's short-direction count minus that at the point "
          "of the line from the first optimum toward the second whose train loss matches the centre's (within 5 %)",
          0.0, ">", "Lanczos start (each a whole series over n)", BOOT,
          "the centres' losses differ with n, so the raw trend mixes n with the loss level; the excess over a "
          "loss-matched point removes the loss level, and the paper claims a monotone trend, so the threshold is no "
          "correlation. Unmatched controls are left out.", "connectors.mconnector.centre_n, "
          "connectors.short_directions.starts"),
    *[Claim(f"tunnel_width_{param}", FORT, f"the radial tunnel width around an optimum {words}",
            f"Spearman rank correlation of the width with {what} over seeds and directions", 0.0, side,
            "seed (and direction within it) per swept value", HIER_BOOT,
            "the paper claims a direction of change (Figure 5), not a size, so the threshold is no correlation.",
            "tunnels.seeds, tunnels.directions")
      for param, words, what, side in (("lr", "grows with the learning rate", "the learning rate", ">"),
                                       ("l2", "grows with L2 regularisation", "the L2 strength", ">"),
                                       ("dropout", "grows with dropout", "the dropout rate", ">"),
                                       ("batch_size", "shrinks with the batch size", "the batch size", "<"))],
    Claim("swa_high_lr", FORT, "at a high learning rate SWA falls behind the snapshot ensemble",
          "snapshot-ensemble minus SWA test accuracy at the largest lr where the ensemble learns (>= 50 %), the "
          "smaller over the schedules", 0.02, ">", "endpoint seed", T_MEAN,
          "'falls behind' is read as more than two percentage points, well above the one-image resolution of the "
          "smallest test set losslab ships (0.22 points) and below the gaps of the paper's Figure 6.", "swa.seeds"),
]}
TUNNEL_PARAMS = {"lr": "tunnel_width_lr", "l2": "tunnel_width_l2", "dropout": "tunnel_width_dropout",
                 "batch_size": "tunnel_width_batch_size"}
COLUMNS = ["claim", "source", "statement", "effect_name", "criterion", "threshold", "side", "effect", "ci_low",
           "ci_high", "n_replicates", "replicate_unit", "interval", "verdict", "measured", "note"]


# ---- intervals and the verdict ----------------------------------------------------------------
def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student t interval; (mean, nan, nan) for fewer than two values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    se = float(x.std(ddof=1)) / math.sqrt(len(x))
    h = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * se
    return m, m - h, m + h


def welch_interval(a, b, level: float = LEVEL) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` with the Welch t interval."""
    a, b = (np.asarray(v, dtype=float) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return d, d - h, d + h


def bootstrap_interval(statistic, resample, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``statistic(resample(rng))`` over ``n_boot`` draws."""
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(resample(rng)) for _ in range(n_boot)], dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) < n_boot // 2:
        return math.nan, math.nan
    q = (1 - level) / 2
    return float(np.quantile(draws, q)), float(np.quantile(draws, 1 - q))


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when y is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return math.nan
    if np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def verdict(lo: float, hi: float, threshold: float, side: str) -> str:
    """Three-way verdict from where the interval ``[lo, hi]`` lies against the threshold."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return INCONCLUSIVE
    above, below = lo > threshold, hi < threshold
    if side == ">":
        return HOLDS if above else FAILS if below else INCONCLUSIVE
    return HOLDS if below else FAILS if above else INCONCLUSIVE


def _row(name: str, measured: str = "", effect=math.nan, lo=math.nan, hi=math.nan, n: int = 0,
         note: str = "", run: bool = True) -> dict:
    c = CLAIMS[name]
    v = verdict(lo, hi, c.threshold, c.side) if run else NOT_RUN
    if run and n < 2 and not note:
        note = "fewer than two replicates: no interval"
    return {"claim": name, "source": c.source, "statement": c.statement, "effect_name": c.effect,
            "criterion": c.criterion, "threshold": c.threshold, "side": c.side, "effect": float(effect),
            "ci_low": float(lo), "ci_high": float(hi), "n_replicates": int(n), "replicate_unit": c.unit,
            "interval": c.interval, "verdict": v, "measured": measured, "note": note}


def not_run(name: str, why: str = "its stage did not run") -> dict:
    return _row(name, note=why, run=False)


def _mean_claim(name: str, per_rep: pd.Series, measured: str, note: str = "") -> dict:
    m, lo, hi = t_interval(per_rep.to_numpy())
    return _row(name, measured, m, lo, hi, int(per_rep.notna().sum()), note)


def _empty(t: pd.DataFrame | None) -> bool:
    return t is None or t.empty


def _unaligned(t: pd.DataFrame) -> pd.DataFrame:
    return t[t["alignment"] == "none"] if "alignment" in t.columns else t


# ---- the claims -------------------------------------------------------------------------------
def curve_barrier(summary: pd.DataFrame | None) -> dict:
    name = "curve_barrier"
    if _empty(summary):
        return not_run(name)
    s = _unaligned(summary)
    s = s[(s.metric == "loss") & (s.split == "train")]
    ratios, parts, flat = {}, [], []
    for (a, b), pair in s.groupby(["seed_a", "seed_b"], sort=True):
        rs = []
        for (kind, bends), g in pair.groupby(["kind", "bends"], sort=True):
            line = float(g.loc[g.path == "line", "barrier"].iloc[0])
            curve = float(g.loc[g.path == "curve", "barrier"].iloc[0])
            if line < 0.1:
                flat.append(f"{a}-{b}")
                continue
            rs.append(curve / line)
            parts.append(f"{kind}{bends} {a}-{b}: {curve:.3f} vs line {line:.3f}")
        if rs:
            ratios[(a, b)] = max(rs)
    note = f"pairs without a line barrier (< 0.1) left out: {', '.join(sorted(set(flat)))}" if flat else ""
    return _mean_claim(name, pd.Series(ratios, dtype=float), "; ".join(parts), note)


def ensemble_phi03(ensemble: pd.DataFrame | None) -> dict:
    name = "ensemble_phi_0.3"
    if _empty(ensemble):
        return not_run(name)
    e = _unaligned(ensemble)
    e = e[(e.split == "test") & (e.path == "curve")]
    if "kind" in e.columns and (e["kind"] == "bezier").any():
        e = e[e["kind"] == "bezier"]
    gaps, nll, parts = {}, {}, []
    for (a, b), g in e.groupby(["seed_a", "seed_b"], sort=True):
        r = g.iloc[(g["t"] - 0.3).abs().argmin()]
        gaps[(a, b)] = r["ensemble_accuracy"] - r["reference_accuracy"]
        if "ensemble_loss" in g.columns:
            nll[(a, b)] = r["ensemble_loss"] - r["reference_loss"]
        parts.append(f"{a}-{b}: t={r['t']:.2f} {100 * r['ensemble_accuracy']:.1f}% vs {100 * r['reference_accuracy']:.1f}%")
    gaps = pd.Series(gaps, dtype=float)
    if gaps.empty or not np.isfinite(gaps).all():
        return _row(name, "no classification accuracy", note="the task has no accuracy")
    if nll:
        m, lo, hi = t_interval(list(nll.values()))
        parts.append(f"NLL difference {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return _mean_claim(name, gaps, "; ".join(parts))


def hyperplanes(table: pd.DataFrame | None) -> dict:
    name = "toy_hyperplanes"
    if _empty(table):
        return not_run(name)
    t = table[table.get("status", pd.Series("ok", index=table.index)) != "diverged"]
    s = int(t["s"].iloc[0])
    logr = np.log10(np.maximum(t["final_loss"] / t["start_loss"], 1e-300))
    below, at = logr[t["d"] == s - 1], logr[t["d"] == s]
    if below.empty or at.empty:
        return _row(name, f"s = {s}: wedge.hyperplanes.dims must hold both {s - 1} and {s}",
                    note="d = s-1 or d = s not swept")
    d, lo, hi = welch_interval(below, at)
    gm = lambda v: 10 ** float(np.mean(v))  # noqa: E731
    return _row(name, f"s = {s}: final/start {gm(below):.2g} at d = {s - 1} ({len(below)} planes), {gm(at):.2g} at "
                f"d = {s} ({len(at)} planes)", d, lo, hi, min(len(below), len(at)))


def _replicate_key(t: pd.DataFrame) -> list[str]:
    """The columns that name a replicate of a connector table: its file, its pair, its Lanczos start."""
    return [c for c in ("source_file", "seed_a", "seed_b", "start") if c in t.columns]


def connector_halves(cosines: pd.DataFrame | None) -> dict:
    name = "connector_halves"
    if _empty(cosines):
        return not_run(name)
    key = _replicate_key(cosines)
    groups = cosines.groupby(key, sort=True) if key else [((0,), cosines)]
    gaps, parts = [], []
    for _, c in groups:
        c = c[c.i != c.j]
        half = lambda t: np.sign(t - 0.5)  # noqa: E731
        same = c[(half(c.t_i) == half(c.t_j)) & (half(c.t_i) != 0)]
        across = c[half(c.t_i) * half(c.t_j) < 0]
        if same.empty or across.empty:
            continue
        w, x = float(same.cosine.mean()), float(across.cosine.mean())
        gaps.append(w - x)
        parts.append(f"within {w:.2f}, across {x:.2f}")
    if not gaps:
        return _row(name, "too few nodes for two halves", note="connectors.segments too small")
    return _mean_claim(name, pd.Series(gaps, dtype=float), "; ".join(parts))


def connector_low_loss(path: pd.DataFrame | None, along: pd.DataFrame | None) -> dict:
    name = "connector_low_loss"
    if _empty(path) or _empty(along):
        return not_run(name, "needs the connectors stage and Bezier curves on the same pairs")
    p = path[(path.split == "train") & (path.path == "connector")]
    a = _unaligned(along)
    a = a[(a.split == "train") & (a.path == "curve") & (a.get("kind", "bezier") == "bezier")]
    bez = {(int(x), int(y)): float(g["loss"].max()) for (x, y), g in a.groupby(["seed_a", "seed_b"])}
    ratios, parts = {}, []
    for (x, y), g in p.groupby(["seed_a", "seed_b"], sort=True):
        k = (int(x), int(y))
        b = bez.get(k, bez.get(k[::-1]))
        if b is None:
            continue
        top = float(g["loss"].max())
        ratios[k] = top / b
        parts.append(f"{x}-{y}: connector max {top:.3f} vs Bezier max {b:.3f}")
    if not ratios:
        return _row(name, "no connector pair has a Bezier curve", note="add the connector pairs to curves.pairs")
    return _mean_claim(name, pd.Series(ratios, dtype=float), "; ".join(parts))


def _variant_note(table: pd.DataFrame | None, what: str = "connector") -> str:
    """Which algorithm made the connector (or m-connector) a claim reads, and at what budget."""
    if _empty(table) or "variant" not in table.columns:
        return ""
    parts = []
    for v, g in table.groupby("variant", sort=True):
        r = g.iloc[0]
        extra = [f"S = {int(r['segments'])}" if "segments" in g else "",
                 f"resolution {int(r['resolution'])}" if "resolution" in g and what != "connector" else "",
                 ("whole normal hyperplane" if r.get("subspace") == "full" else f"d = {int(r['d'])}")
                 if "d" in g and pd.notna(r["d"]) and r["d"] > 0 else "",
                 f"{int(r['steps_per_node'])} steps per node" if "steps_per_node" in g and r["steps_per_node"] > 0 else ""]
        parts.append(f"{what} variant {v}" + "".join(f", {e}" for e in extra if e))
    return "; ".join(parts) + ": " + REDUCED


REDUCED = ("the embedded default runs a reduced version of the paper's experiment (digits, a small CNN, a CPU budget); "
           "presets/cifar10.yaml is the paper-scale run")


def _with_note(row: dict, note: str) -> dict:
    """``row`` with ``note`` added in front of its own note (a claim that did not run keeps its own)."""
    if note and row["verdict"] != NOT_RUN:
        row["note"] = note + (f"; {row['note']}" if row["note"] else "")
    return row


def _bezier_max(along: pd.DataFrame | None) -> dict:
    """(seed_a, seed_b) -> the largest train loss along the unaligned Bezier curve of that pair."""
    if _empty(along):
        return {}
    a = _unaligned(along)
    a = a[(a.split == "train") & (a.path == "curve") & (a.get("kind", "bezier") == "bezier")]
    return {(int(x), int(y)): float(g["loss"].max()) for (x, y), g in a.groupby(["seed_a", "seed_b"])}


def _bezier_reference(bez: dict, seeds: list[int]) -> tuple[float, list[str]]:
    """The largest Bezier train loss over the pairs of ``seeds`` that have a curve, and those pairs."""
    found = {}
    for i, x in enumerate(seeds):
        for y in seeds[i + 1:]:
            v = bez.get((x, y), bez.get((y, x)))
            if v is not None:
                found[f"{x}-{y}"] = v
    return (max(found.values()) if found else math.nan), sorted(found)


def mconnector_low_loss(surface: pd.DataFrame | None, along: pd.DataFrame | None) -> dict:
    name = "mconnector_low_loss"
    if _empty(surface) or _empty(along):
        return not_run(name, "needs the m-connector surface and Bezier curves between its optima")
    s = surface[(surface.split == "train") & (surface.surface == "mconnector")]
    bez = _bezier_max(along)
    ratios, parts = {}, []
    for key, g in s.groupby(["source_file", "seeds"] if "source_file" in s else ["seeds"], sort=True):
        seeds = [int(v) for v in str(g["seeds"].iloc[0]).split("-")]
        ref, pairs = _bezier_reference(bez, seeds)
        if not pairs:
            continue
        q95, top = float(g["loss"].quantile(0.95)), float(g["loss"].max())
        ratios[key] = q95 / ref
        parts.append(f"{'-'.join(map(str, seeds))}: 95th percentile {q95:.3f} (max {top:.3f}, median "
                     f"{float(g['loss'].median()):.3f}) over {len(g)} grid points vs Bezier max {ref:.3f} "
                     f"(pairs {', '.join(pairs)})")
    if not ratios:
        return _row(name, "no m-connector has Bezier curves between its optima",
                    note="add pairs of connectors.mconnector.seeds to curves.pairs")
    row = _mean_claim(name, pd.Series(ratios, dtype=float), "; ".join(parts))
    return _with_note(row, _variant_note(surface, "m-connector"))


def mconnector_centre_low_loss(centre: pd.DataFrame | None, along: pd.DataFrame | None) -> dict:
    name = "mconnector_centre_low_loss"
    if _empty(centre) or _empty(along) or "seeds" not in centre.columns:
        return not_run(name, "needs the m-connector centres and Bezier curves between their optima")
    bez = _bezier_max(along)
    ratios, parts = {}, []
    for n, g in centre[centre.n >= 2].groupby("n", sort=True):
        seeds = [int(v) for v in str(g["seeds"].iloc[0]).split("-")]
        ref, pairs = _bezier_reference(bez, seeds)
        if not pairs:
            continue
        loss = float(g["centre_train_loss"].iloc[0])
        ratios[n] = loss / ref
        parts.append(f"n={n}: centre {loss:.3f} vs Bezier max {ref:.3f}")
    if not ratios:
        return _row(name, "no centre of n >= 2 optima has Bezier curves between its optima",
                    note="add pairs of connectors.mconnector.centre_seeds to curves.pairs")
    row = _mean_claim(name, pd.Series(ratios, dtype=float), "; ".join(parts))
    return _with_note(row, "centres optimised by the paper's algorithm (one point each, in either variant): " + REDUCED)


def short_mid_path(short: pd.DataFrame | None) -> dict:
    name = "short_directions_mid_path"
    if _empty(short):
        return not_run(name)
    key = _replicate_key(short)
    effects, mids, ends = [], [], []
    for _, g in (short.groupby(key, sort=True) if key else [(0, short)]):
        counts = g.groupby("t")["short_count"].first()  # one count per point and start (rows are per rank)
        mid = float(counts.iloc[np.abs(counts.index - 0.5).argmin()])
        end = float(counts.loc[[counts.index.min(), counts.index.max()]].mean())
        effects.append(mid - end)
        mids.append(mid)
        ends.append(end)
    return _mean_claim(name, pd.Series(effects, dtype=float),
                       f"{np.mean(mids):.1f} mid-path against {np.mean(ends):.1f} at the optima (means)")


def short_with_m(centre: pd.DataFrame | None) -> dict:
    name = "short_directions_with_m"
    if _empty(centre):
        return not_run(name)
    key = _replicate_key(centre)
    units = [g.groupby("n")["short_count"].first().reset_index().to_numpy(float) for _, g in
             (centre.groupby(key, sort=True) if key else [(0, centre)])]  # one count per n and start
    pooled = np.concatenate(units)
    rho = spearman(pooled[:, 0], pooled[:, 1])
    means = centre.groupby("n")["short_count"].mean().sort_index()
    measured = ", ".join(f"n={n}: {c:.1f}" for n, c in means.items())
    if len(units) < 2:
        return _row(name, measured, rho, n=len(units))

    def draw(rng):
        return np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])

    lo, hi = bootstrap_interval(lambda d: spearman(d[:, 0], d[:, 1]), draw)
    return _row(name, measured, rho, lo, hi, len(units))


def _unmatched_note(rows: pd.DataFrame, target: str) -> str:
    """How many controls found no line point at their target loss, and why when it is below the line."""
    bad = rows[~rows.matched]
    if bad.empty:
        return ""
    below = int((bad[target] < bad["control_loss"]).sum())
    why = (f" ({below} of them lower in train loss than the optimum itself, below every point of the line)"
           if below else "")
    return f"{len(bad)} unmatched controls left out{why}"


def _pair_start(t: pd.DataFrame) -> list[str]:
    return [c for c in ("seed_a", "seed_b", "start") if c in t.columns]


def short_mid_path_matched(short: pd.DataFrame | None, matched: pd.DataFrame | None) -> dict:
    name = "short_directions_mid_path_matched"
    if _empty(short) or _empty(matched):
        return not_run(name, "needs the connectors' short directions and their matched-loss controls")
    key = _pair_start(matched)
    ctrl = matched.groupby(key, sort=True).agg(t=("t", "first"), control=("short_count", "first"),
                                               matched=("matched", "first"), loss=("node_train_loss", "first"),
                                               t_line=("t_line", "first"),
                                               control_loss=("control_train_loss", "first")).reset_index()
    node = short.groupby(key + ["t"], sort=True)["short_count"].first().rename("node").reset_index()
    both = ctrl.merge(node, on=key + ["t"], how="inner")
    left_out = _unmatched_note(both, "loss")
    both = both[both.matched]
    effects = both["node"] - both["control"]
    per_pair = both.groupby([c for c in ("seed_a", "seed_b") if c in both], sort=True).agg(
        node=("node", "mean"), control=("control", "mean"), loss=("loss", "first"), t_line=("t_line", "first"),
        control_loss=("control_loss", "first")) if not both.empty else pd.DataFrame()
    measured = "; ".join(f"{'-'.join(map(str, k)) if isinstance(k, tuple) else k}: node {r.node:.1f} at train loss "
                         f"{r.loss:.3f} vs line t={r.t_line:.3f} {r.control:.1f} at {r.control_loss:.3f}"
                         for k, r in per_pair.iterrows())
    row = _mean_claim(name, effects.reset_index(drop=True).astype(float), measured or "no matched control")
    return _with_note(row, left_out)


def short_with_m_matched(centre: pd.DataFrame | None, matched: pd.DataFrame | None) -> dict:
    name = "short_directions_with_m_matched"
    if _empty(centre) or _empty(matched):
        return not_run(name, "needs the m-connector centres' short directions and their matched-loss controls")
    cc = centre[centre.n >= 2].groupby(["start", "n"])["short_count"].first().rename("centre").reset_index()
    mc = matched.groupby(["start", "n"]).agg(control=("short_count", "first"), matched=("matched", "first"),
                                             loss=("centre_train_loss", "first"), t_line=("t_line", "first"),
                                             control_loss=("control_train_loss", "first")).reset_index()
    both = cc.merge(mc, on=["start", "n"], how="inner")
    note = _unmatched_note(both, "loss")
    both = both[both.matched].assign(excess=lambda d: d.centre - d.control)
    means = both.groupby("n").agg(centre=("centre", "mean"), control=("control", "mean"), loss=("loss", "first"),
                                  control_loss=("control_loss", "first"))
    measured = ", ".join(f"n={n}: {r.centre:.1f} vs {r.control:.1f} at train loss {r.loss:.3f} ({r.control_loss:.3f})"
                         for n, r in means.iterrows()) or "no matched control"
    units = [g[["n", "excess"]].to_numpy(float) for _, g in both.groupby("start", sort=True)]
    if not units:
        return _row(name, measured, note=note or "no matched control")
    pooled = np.concatenate(units)
    rho = spearman(pooled[:, 0], pooled[:, 1])
    if not np.isfinite(rho):
        return _row(name, measured, note=(note + "; " if note else "") + "fewer than three n >= 2: no rank correlation")
    if len(units) < 2:
        return _row(name, measured, rho, n=len(units), note=note)

    def draw(rng):
        return np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])

    lo, hi = bootstrap_interval(lambda d: spearman(d[:, 0], d[:, 1]), draw)
    return _row(name, measured, rho, lo, hi, len(units), note)


def tunnel_trend(widths: pd.DataFrame | None, param: str) -> dict:
    name = TUNNEL_PARAMS[param]
    if _empty(widths):
        return not_run(name)
    w = widths[widths.param == param]
    if "status" in w.columns:
        w = w[w.status != "diverged"]
    w = w[np.isfinite(w["width"])]
    if w["value"].nunique() < 2:
        return not_run(name, f"fewer than two {param} values swept")
    strata = [[g.groupby("direction")["width"].first().to_numpy(float) for _, g in v.groupby("seed", sort=True)]
              for _, v in w.groupby("value", sort=True)]
    values = sorted(w["value"].unique())
    rho = spearman(w["value"], w["width"])
    means = w.groupby("value")["width"].mean()
    measured = ", ".join(f"{v:g}: {m:.2f}" for v, m in means.items())
    if "width_rel" in w.columns:
        rel = w.groupby("value")["width_rel"].mean()
        measured += " (relative to |w|: " + ", ".join(f"{r:.2f}" for r in rel) + ")"
    n = min(len(s) for s in strata)

    def draw(rng):
        xs, ys = [], []
        for v, seeds in zip(values, strata):
            for i in rng.integers(0, len(seeds), len(seeds)):
                ray = seeds[i]
                ys.append(ray[rng.integers(0, len(ray), len(ray))])
                xs.append(np.full(len(ray), v))
        return np.concatenate(xs), np.concatenate(ys)

    lo, hi = bootstrap_interval(lambda d: spearman(*d), draw)
    return _row(name, measured, rho, lo, hi, n, note="" if n >= 2 else "one seed per value: directions only")


def swa_high_lr(summary: pd.DataFrame | None) -> dict:
    name = "swa_high_lr"
    if _empty(summary):
        return not_run(name)
    t = summary[(summary.split == "test") & (summary.status == "ok")]
    m = t.groupby(["schedule", "lr"])[["swa_accuracy", "ensemble_accuracy"]].mean().reset_index()
    learning = m[m.ensemble_accuracy >= 0.5]
    if learning.empty:
        return _row(name, "no learning rate where the ensemble learns", note="no lr learns")
    lr = learning["lr"].max()
    at = t[t.lr == lr].assign(gap=lambda d: d.ensemble_accuracy - d.swa_accuracy)
    per_seed = at.groupby("seed")["gap"].min()
    parts = [f"{r.schedule} lr {lr:g}: SWA {100 * r.swa_accuracy:.1f}% vs ensemble {100 * r.ensemble_accuracy:.1f}%"
             for r in at.groupby("schedule")[["swa_accuracy", "ensemble_accuracy"]].mean().reset_index().itertuples()]
    return _mean_claim(name, per_seed, "; ".join(parts))


RAW_COUNTS = "raw counts, whatever the points' train loss (the loss-matched reading: short_directions"
TABLES = ("curves_summary", "curves_ensemble", "curves_along", "hyperplanes", "cosines", "connector_path", "short",
          "centre", "tunnel_widths", "swa", "surface", "short_matched", "centre_matched")


def score(tables: dict) -> pd.DataFrame:
    """Every claim's row, from ``tables`` (name in :data:`TABLES` -> DataFrame or None)."""
    g = tables.get
    variant = _variant_note(g("connector_path"))
    rows = [curve_barrier(g("curves_summary")), ensemble_phi03(g("curves_ensemble")), hyperplanes(g("hyperplanes")),
            _with_note(connector_halves(g("cosines")), variant),
            _with_note(connector_low_loss(g("connector_path"), g("curves_along")), variant),
            mconnector_low_loss(g("surface"), g("curves_along")),
            mconnector_centre_low_loss(g("centre"), g("curves_along")),
            _with_note(short_mid_path(g("short")), "; ".join(filter(None, [variant, RAW_COUNTS + "_mid_path_matched)"]))),
            _with_note(short_with_m(g("centre")), RAW_COUNTS + "_with_m_matched)"),
            _with_note(short_mid_path_matched(g("short"), g("short_matched")), variant),
            short_with_m_matched(g("centre"), g("centre_matched"))]
    rows += [tunnel_trend(g("tunnel_widths"), p) for p in TUNNEL_PARAMS]
    rows.append(swa_high_lr(g("swa")))
    card = pd.DataFrame(rows, columns=COLUMNS)
    assert list(card["claim"]) == list(CLAIMS), "every claim is scored once, in CLAIMS order"
    return card


# ---- several experiments: the claims matrix ---------------------------------------------------
# Claims read on a stage that no dataset or model changes (the toy wedge model): scored once per
# run, in a column of their own (the results folder of that stage), not once per experiment.
SHARED_CLAIMS = {"toy_hyperplanes": "toy_wedge"}


def score_runs(runs: dict[str, dict]) -> pd.DataFrame:
    """The claims matrix in long form: one row per (experiment, claim). ``runs``: experiment
    label (``dataset/model``) -> its tables, as :func:`score` takes them. A claim of
    :data:`SHARED_CLAIMS` gets one row, under its own column, from the first experiment that has
    its table. Rows are in :data:`CLAIMS` order, then in the order of ``runs``."""
    parts, shared = [], {}
    for label, tables in runs.items():
        card = score(tables).assign(experiment=label)
        for name, column in SHARED_CLAIMS.items():
            row = card[card["claim"] == name]
            if column not in shared or (shared[column]["verdict"].iloc[0] == NOT_RUN and row["verdict"].iloc[0] != NOT_RUN):
                shared[column] = row.assign(experiment=column)
        parts.append(card[~card["claim"].isin(SHARED_CLAIMS)])
    long = pd.concat(parts + list(shared.values()), ignore_index=True)
    order = {c: i for i, c in enumerate(CLAIMS)}
    cols = {e: i for i, e in enumerate(list(runs) + list(shared))}
    long = long.assign(_c=long["claim"].map(order), _e=long["experiment"].map(cols))
    long = long.sort_values(["_c", "_e"], kind="stable").drop(columns=["_c", "_e"]).reset_index(drop=True)
    return long[["experiment"] + COLUMNS]


def experiments_of(card: pd.DataFrame) -> list[str]:
    """The experiments of a card, in its order (the shared columns last)."""
    if "experiment" not in card.columns:
        return []
    found = list(dict.fromkeys(card["experiment"]))
    return [e for e in found if e not in SHARED_CLAIMS.values()] + [e for e in found if e in SHARED_CLAIMS.values()]


def summary_text(card: pd.DataFrame, claim: str) -> str:
    """``holds in k of n experiments``: n counts the experiments where the claim was scored."""
    rows = card[(card["claim"] == claim) & (card["verdict"] != NOT_RUN)]
    if rows.empty:
        return "not run"
    k = int((rows["verdict"] == HOLDS).sum())
    return f"holds in {k} of {len(rows)}" + (" experiment" if len(rows) == 1 else " experiments")


def cell_text(r) -> str:
    return f"{r.verdict}: {interval_text(r)}"


def matrix(card: pd.DataFrame) -> pd.DataFrame:
    """Claims by experiments: each cell the verdict with the effect and its interval ('' where the
    claim has no row), and the summary column."""
    exps = experiments_of(card)
    out = pd.DataFrame("", index=list(dict.fromkeys(card["claim"])), columns=exps + ["summary"])
    for r in card.itertuples():
        out.loc[r.claim, r.experiment] = cell_text(r)
    for c in out.index:
        out.loc[c, "summary"] = summary_text(card, c)
    return out


def matrix_markdown(card: pd.DataFrame) -> str:
    """The claims matrix as a markdown table (docs/stages.md, the README)."""
    m = matrix(card)
    out = ["| claim | " + " | ".join(f"`{e}`" for e in m.columns[:-1]) + " | summary |",
           "|---|" + "---|" * len(m.columns)]
    for claim, row in m.iterrows():
        out.append(f"| `{claim}` | " + " | ".join(_md(v) or "" for v in row) + " |")
    return "\n".join(out) + "\n"


def _matrix_html(card: pd.DataFrame, esc) -> str:
    exps = experiments_of(card)
    head = "".join(f"<th>{esc(e)}</th>" for e in exps)
    rows = []
    for claim in dict.fromkeys(card["claim"]):
        cells = []
        for e in exps:
            hit = card[(card["claim"] == claim) & (card["experiment"] == e)]
            if hit.empty:
                cells.append("<td></td>")
                continue
            r = next(hit.itertuples())
            cells.append(f"<td style='background:{COLOUR.get(r.verdict, '#fff')}'><b>{esc(r.verdict)}</b><br>"
                         f"{esc(interval_text(r))}</td>")
        rows.append(f"<tr><td>{esc(claim)}</td>{''.join(cells)}<td>{esc(summary_text(card, claim))}</td></tr>")
    return ("<h2>Claims by experiment</h2><p>Each cell: the verdict, the effect and its 95 % interval. The last "
            "column counts the experiments where the claim holds, of those where it was scored.</p>"
            "<table border='1' cellpadding='4' style='border-collapse:collapse;font-family:sans-serif;font-size:13px'>"
            f"<tr><th>claim</th>{head}<th>summary</th></tr>\n" + "\n".join(rows) + "\n</table>")


# ---- renderings: HTML page, report landing page, markdown for the docs ------------------------
COLOUR = {HOLDS: "#d9f2d9", FAILS: "#f8d7d7", INCONCLUSIVE: "#fff3c4", NOT_RUN: "#eeeeee"}


def fmt(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3g}"


def interval_text(r) -> str:
    if not np.isfinite(r.effect):
        return "n/a"
    ci = f" [{fmt(r.ci_low)}, {fmt(r.ci_high)}]" if np.isfinite(r.ci_low) else " (no interval)"
    return f"{fmt(r.effect)}{ci}"


def counts_text(card: pd.DataFrame) -> str:
    c = card["verdict"].value_counts().to_dict()
    return ", ".join(f"{c.get(v, 0)} {v}" for v in VERDICTS)


def html(card: pd.DataFrame, title: str = "losslab reproduction scorecard") -> str:
    """A self-contained HTML page of the scorecard: the claims matrix (with an ``experiment``
    column), then every row in full."""
    esc = lambda v: str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    exp = (lambda r: f"<td>{esc(r.experiment)}</td>") if "experiment" in card.columns else (lambda r: "")
    rows = "\n".join(
        f"<tr style='background:{COLOUR.get(r.verdict, '#fff')}'>{exp(r)}<td>{esc(r.claim)}</td><td>{esc(r.source)}</td>"
        f"<td>{esc(r.statement)}</td><td>{esc(r.criterion)}</td><td>{esc(interval_text(r))}</td>"
        f"<td>{r.n_replicates} {esc(r.replicate_unit)}</td><td>{esc(r.measured)}</td>"
        f"<td><b>{esc(r.verdict)}</b>{'<br>' + esc(r.note) if r.note else ''}</td></tr>"
        for r in card.itertuples())
    grid = _matrix_html(card, esc) + "<h2>Every claim in full</h2>" if "experiment" in card.columns else ""
    exp_head = "<th>experiment</th>" if "experiment" in card.columns else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title></head><body>"
            f"<h1>{esc(title)}</h1><p>{counts_text(card)}. Each verdict reads a 95 % interval against a threshold fixed "
            "in losslab/scorecard.py before any run: holds when the interval lies on the claim's side, does not "
            "hold when it lies on the other, inconclusive when it covers the threshold.</p>"
            f"{grid}<table border='1' cellpadding='4' style='border-collapse:collapse;font-family:sans-serif;font-size:13px'>"
            f"<tr>{exp_head}<th>claim</th><th>seed work</th><th>statement</th><th>criterion</th><th>effect [95 % interval]</th>"
            f"<th>replicates</th><th>measured</th><th>verdict</th></tr>\n{rows}\n</table></body></html>\n")


SECTION_OF = {"curve_barrier": "Curves", "ensemble_phi_0.3": "Curves", "toy_hyperplanes": "Toy wedge model",
              "connector_halves": "Connectors", "connector_low_loss": "Connectors",
              "short_directions_mid_path": "Connectors", "short_directions_with_m": "Connectors",
              "mconnector_low_loss": "Connectors", "mconnector_centre_low_loss": "Connectors",
              "short_directions_mid_path_matched": "Connectors", "short_directions_with_m_matched": "Connectors",
              "swa_high_lr": "SWA", **{c: "Tunnels" for c in TUNNEL_PARAMS.values()}}


def landing_rst(card: pd.DataFrame, intro: str) -> str:
    """The report's landing page: the counts, then claims by experiments (each cell the verdict,
    the effect and its interval), how many experiments each claim holds in, and a link to the
    report section of the figures it is read on."""
    exps = experiments_of(card) or [""]
    lines = [intro.rstrip(), "", f"**Scorecard**: {counts_text(card)} (the whole table: `Scorecard`_).", "",
             ".. list-table::", "   :header-rows: 1", "", "   * - claim"]
    lines += [f"     - {e or 'verdict and effect [95 % interval]'}" for e in exps]
    lines += ["     - threshold", "     - summary", "     - figures"]
    for claim in dict.fromkeys(card["claim"]):
        lines.append(f"   * - {claim}")
        for e in exps:
            hit = card[(card["claim"] == claim) & ((card["experiment"] == e) if e else True)]
            lines.append("     - " + (f"**{hit['verdict'].iloc[0]}** {interval_text(next(hit.itertuples()))}"
                                      if not hit.empty else ""))
        c = CLAIMS[claim]
        lines += [f"     - holds {c.side} {c.threshold:g}", f"     - {summary_text(card, claim)}",
                  f"     - `{SECTION_OF[claim]}`_"]
    return "\n".join(lines) + "\n"


def _md(v) -> str:
    return str(v).replace("|", "\\|")


def criteria_markdown() -> str:
    """The criteria table of docs/stages.md (a test keeps the docs equal to it)."""
    out = ["| claim | effect size | holds when the 95 % interval lies | unit of replication (config) | interval | "
           "why this threshold |", "|---|---|---|---|---|---|"]
    for c in CLAIMS.values():
        where = f"{'above' if c.side == '>' else 'below'} {c.threshold:g}"
        out.append(f"| `{c.name}` | {_md(c.effect)} | {where} | {_md(c.unit)} (`{c.replicates}`) | {_md(c.interval)} "
                   f"| {_md(c.reason)} |")
    return "\n".join(out) + "\n"


def card_markdown(card: pd.DataFrame) -> str:
    """A finished run's scorecard as the markdown table quoted in docs/stages.md (with an
    experiment column when the run has several)."""
    many = len([e for e in experiments_of(card) if e not in SHARED_CLAIMS.values()]) > 1
    out = [f"{counts_text(card)}.", "", ("| experiment " if many else "") + "| claim | effect [95 % interval] | threshold | "
           "replicates | measured | verdict |", ("|---" if many else "") + "|---|---|---|---|---|---|"]
    for r in card.itertuples():
        out.append((f"| `{r.experiment}` " if many else "") + f"| `{r.claim}` | {interval_text(r)} | {r.side} "
                   f"{r.threshold:g} | {r.n_replicates} | {_md(r.measured)} | **{r.verdict}** |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m losslab.scorecard",
                                description="Print the scorecard criteria, or a finished run's scorecard, as markdown.")
    p.add_argument("table", nargs="?", help="results/scorecard.parquet (omit to print the criteria table)")
    p.add_argument("--matrix", action="store_true", help="print the claims matrix (claims by experiments) instead")
    a = p.parse_args(argv)
    if not a.table:
        print(criteria_markdown(), end="")
        return
    card = pd.read_parquet(a.table)
    print(matrix_markdown(card) if a.matrix else card_markdown(card), end="")


if __name__ == "__main__":
    main()
