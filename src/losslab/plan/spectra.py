"""Plan of the spectra stage: Hessian spectra (converged top eigenvalues and short-direction
counts, Hutchinson trace, SLQ density) at the points of interest of the other stages: along the
configured curves and their straight lines (the endpoints are t = 0 and 1), at the connector's
nodes and at the m-connector centres.

It reads the curves and connectors stages' plans, so it is planned after them; a point set whose
stage is switched off is left out.
"""
from __future__ import annotations

from .core import Plan, PlanError
from .curves import OUT as CURVE_OUT, experiment_curves
from .connectors import OUT as CON_OUT, stage as connector_stage

DIR = "{dataset}/{model}/spectra"
TABLES = ("counts", "eigenvalues", "density")
OUT = {
    "curve": DIR + "/curves/{curve}/{table}.parquet",
    "connector": DIR + "/connectors/{connector}/{table}.parquet",
    "centres": DIR + "/mconnectors/{mconnector}/{table}.parquet",
    "fig": "{dataset}/{model}/figures/spectra/{name}.{ext}",
}
FIGURES = ("spectra_density", "spectra_top_trace", "spectra_short")
KEYS = ("samples", "seed", "top_k", "min_steps", "tol", "max_top_k", "max_steps", "starts", "probes")


def plan_spectra(plan: Plan) -> None:
    c = plan.config["spectra"]
    if not c["enabled"]:
        return
    exp = plan.main_experiment
    if c["min_steps"] < c["top_k"]:
        raise PlanError(f"spectra.min_steps = {c['min_steps']} must be at least spectra.top_k = {c['top_k']} "
                        "(Lanczos keeps top_k of its Ritz values)")
    cv = plan.config["curves"]
    missing = [k for k in c["kinds"] if k not in cv["kinds"]]
    if cv["enabled"] and "curves" in c["at"] and missing:
        raise PlanError(f"spectra.kinds = {c['kinds']} names {missing}, which curves.kinds = {cv['kinds']} does not "
                        "train; use kinds from curves.kinds")
    curves = [d for d in experiment_curves(plan, exp.dataset, exp.model)
              if d["kind"] in c["kinds"] and d["alignment"] == "none"] if cv["enabled"] and "curves" in c["at"] else []
    con = plan.stages.get("connectors", {}).get(exp.key)
    con = con if con and {"connector", "centres"} & set(c["at"]) else None
    settings = {d["setting"] for d in curves} | ({plan.config["connectors"]["setting"]} if con else set())
    for s in settings:
        if exp.networks[s]["bn_min_values"] == 1:
            n = min(c["samples"], plan.config["evaluation"]["train_size"], exp.info["n_train"])
            if n == 1:
                raise PlanError(f"spectra.samples = {c['samples']} gives a Hessian batch of one sample, which the "
                                f"BatchNorm layers of {exp.model} cannot normalise; use at least 2")
    ids = dict(dataset=exp.dataset, model=exp.model)
    tables = {}
    for d in curves:
        tables.setdefault("curve", []).append(_add(plan, "spectra_curve", exp.key + (d["id"],), "curve", curve=d["id"], **ids))
    if con and "connector" in c["at"]:
        tables["connector"] = [_add(plan, "spectra_connector", exp.key + (con["connector"],), "connector",
                                    connector=con["connector"], **ids)]
    if con and "centres" in c["at"]:
        tables["centres"] = [_add(plan, "spectra_centres", exp.key + (con["centre"],), "centres",
                                  mconnector=con["centre"], **ids)]
    plan.stages["spectra"] = {exp.key: tables}
    if not tables.get("curve"):
        return  # the figures draw spectra against t along curve and line
    plan.add_job("plot_spectra", exp.key, **{n: plan.path(OUT["fig"], name=n, ext="png", **ids) for n in FIGURES},
                 pdfs=[plan.path(OUT["fig"], name=n, ext="pdf", **ids) for n in FIGURES])


def _add(plan: Plan, rule: str, key: tuple, where: str, **fields) -> dict:
    outs = {t: plan.path(OUT[where], table=t, **fields) for t in TABLES}
    plan.add_job(rule, key, **outs)
    return outs


def settings(plan: Plan) -> dict:
    """Only the keys the spectra rules use: the stage's own, and the short-direction threshold."""
    c = plan.config["spectra"]
    return {**{k: c[k] for k in KEYS}, "threshold": plan.config["connectors"]["short_directions"]["threshold"]}


def curve_spec(plan: Plan, wc) -> dict:
    """Only what the curve spectra use: dataset, model, evaluation subsets, the curve's ids."""
    from .curves import curve_def

    d = curve_def(plan, wc.dataset, wc.model, wc.curve)
    return {**plan.experiment_spec(wc.dataset, wc.model, d["setting"]),
            "ids": {"setting": d["setting"], "seed_a": d["a"], "seed_b": d["b"], "kind": d["kind"], "bends": d["bends"]}}


def curve_inputs(plan: Plan, wc) -> dict:
    from .curves import curve_def

    d = curve_def(plan, wc.dataset, wc.model, wc.curve)
    return {"w1": d["w1"], "w2": d["w2"],
            "ckpt": plan.path(CURVE_OUT["ckpt"], dataset=wc.dataset, model=wc.model, curve=d["id"])}


def connector_inputs(plan: Plan, wc) -> dict:
    s = connector_stage(plan, wc.dataset, wc.model)
    return {"optima": s["connectors"][s["connector"]]["optima"],  # the first pair of connectors.pairs
            "nodes": plan.path(CON_OUT["nodes"], dataset=wc.dataset, model=wc.model, connector=s["connector"])}


def centre_inputs(plan: Plan, wc) -> dict:
    s = connector_stage(plan, wc.dataset, wc.model)
    return {"optima": s["centre_optima"],
            "centres": plan.path(CON_OUT["centres"], dataset=wc.dataset, model=wc.model, mconnector=s["centre"])}


def spec(plan: Plan, wc, setting: str) -> dict:
    """Dataset, model and evaluation subsets of the network the spectra are taken of."""
    return plan.experiment_spec(wc.dataset, wc.model, setting)


def figure_inputs(plan: Plan, wc) -> dict:
    """Every spectra table of the experiment, by point set and table."""
    tables = plan.entry("spectra", (wc.dataset, wc.model), "spectra")
    return {f"{where}_{t}": [o[t] for o in outs] for where, outs in tables.items() for t in TABLES}
