"""Plan of the connectors stage (Fort & Jastrzebski 4.2-4.3): a connector between two optima,
an m-connector between three, the simplex centre of n optima, and their short directions."""
from __future__ import annotations

from .core import Plan, PlanError, check_pairs

CON = "{dataset}/{model}/connectors/{connector}"
MCON = "{dataset}/{model}/mconnectors/{mconnector}"
FIG = "{dataset}/{model}/figures/connectors/{name}.{ext}"
OUT = {
    "nodes": CON + "/nodes.pt",
    "table": CON + "/nodes.parquet",
    "path": CON + "/path.parquet",
    "cosines": CON + "/cosines.parquet",
    "short": CON + "/short_directions.parquet",
    "m_nodes": MCON + "/nodes.pt",
    "m_table": MCON + "/nodes.parquet",
    "m_surface": MCON + "/surface.parquet",
    "centre": MCON + "/centre.parquet",
    "centres": MCON + "/centres.pt",
    "short_matched": CON + "/short_matched.parquet",
    "centre_matched": MCON + "/centre_matched.parquet",
    "fig": FIG,
}
FIGURES = ("connector_path", "connector_cosines", "connector_agreement", "connector_short_directions",
           "mconnector_triangle", "mconnector_centre")
OPT_KEYS = ("d", "subspace", "optimizer", "lr", "steps", "batch_size", "seed")


def _seeds(seeds) -> str:
    return "-".join(map(str, seeds))


def plan_connectors(plan: Plan) -> None:
    c = plan.config["connectors"]
    if not c["enabled"]:
        return
    exp = plan.main_experiment
    setting = c["setting"]
    exp.setting(setting, "connectors.setting")
    mc, sd = c["mconnector"], c["short_directions"]
    if max(mc["centre_n"]) > len(mc["centre_seeds"]):
        raise PlanError(f"connectors.mconnector.centre_n = {mc['centre_n']} asks for {max(mc['centre_n'])} optima but "
                        f"connectors.mconnector.centre_seeds lists only {len(mc['centre_seeds'])}; add seeds or "
                        "lower centre_n")
    if sd["iters"] < sd["top_k"]:
        raise PlanError(f"connectors.short_directions.iters = {sd['iters']} must be at least "
                        f"connectors.short_directions.top_k = {sd['top_k']} (Lanczos keeps top_k of iters Ritz values)")
    net = exp.networks[setting]
    D = net["n_params"]
    if c["d"] is not None:
        n_hull = max([2, 3] + [n for n in mc["centre_n"] if n > 1])
        if c["d"] > D - (n_hull - 1):
            raise PlanError(f"connectors.d = {c['d']} is larger than the model allows: {exp.model} has {D} parameters, "
                            f"so a hyperplane orthogonal to the hull of {n_hull} optima has {D - (n_hull - 1)} "
                            f"directions; use at most {D - (n_hull - 1)}, or null for the whole hyperplane")
    if net["bn_min_values"] == 1:
        n_hess = min(sd["samples"], plan.config["evaluation"]["train_size"], exp.info["n_train"])
        if n_hess == 1:
            raise PlanError(f"connectors.short_directions.samples = {sd['samples']} gives a Hessian batch of one "
                            f"sample, which the BatchNorm layers of {exp.model} cannot normalise; use at least 2")
        if c["batch_size"] == 1:
            raise PlanError(f"connectors.batch_size = 1: the BatchNorm layers of {exp.model} cannot normalise a "
                            "minibatch of one sample; use at least 2 (or null for the full training set)")
    pairs = [tuple(int(v) for v in p) for p in c["pairs"]]
    check_pairs(pairs, lambda i: f"connectors.pairs[{i}]", "connectors.pairs", "optimum", unordered=True)
    cons = {f"{setting}/seeds{a}-{b}": {"a": a, "b": b, "optima": [
        plan.need_endpoint(exp, setting, s, f"connectors.pairs[{i}]") for s in (a, b)]}
        for i, (a, b) in enumerate(pairs)}
    tri_id = f"{setting}/seeds{_seeds(mc['seeds'])}"
    centre_id = f"{setting}/centre-seeds{_seeds(mc['centre_seeds'])}"
    stage = {
        "connectors": cons, "connector": next(iter(cons)), "mconnector": tri_id, "centre": centre_id,
        "m_optima": [plan.need_endpoint(exp, setting, s, "connectors.mconnector.seeds") for s in mc["seeds"]],
        "centre_optima": [plan.need_endpoint(exp, setting, s, "connectors.mconnector.centre_seeds")
                          for s in mc["centre_seeds"]],
        "opt": {**{k: c[k] for k in OPT_KEYS}, "memory_budget_mb": plan.config["compute"]["memory_budget_mb"]},
    }
    plan.stages["connectors"] = {exp.key: stage}
    for con_id in cons:
        f = dict(dataset=exp.dataset, model=exp.model, connector=con_id)
        k = exp.key + (con_id,)
        plan.add_job("connector", k, nodes=plan.path(OUT["nodes"], **f), table=plan.path(OUT["table"], **f))
        plan.add_job("connector_path", k, path=plan.path(OUT["path"], **f), cosines=plan.path(OUT["cosines"], **f))
        plan.add_job("connector_short_directions", k, table=plan.path(OUT["short"], **f))
        plan.add_job("connector_matched_control", k, table=plan.path(OUT["short_matched"], **f))
    m = dict(dataset=exp.dataset, model=exp.model, mconnector=tri_id)
    plan.add_job("mconnector", exp.key + (tri_id,), nodes=plan.path(OUT["m_nodes"], **m),
                 table=plan.path(OUT["m_table"], **m))
    plan.add_job("mconnector_surface", exp.key + (tri_id,), table=plan.path(OUT["m_surface"], **m))
    cm = dict(dataset=exp.dataset, model=exp.model, mconnector=centre_id)
    plan.add_job("mconnector_centre", exp.key + (centre_id,), table=plan.path(OUT["centre"], **cm),
                 centres=plan.path(OUT["centres"], **cm))
    plan.add_job("mconnector_matched_control", exp.key + (centre_id,), table=plan.path(OUT["centre_matched"], **cm))
    figs = {n: plan.path(OUT["fig"], dataset=exp.dataset, model=exp.model, name=n, ext="png") for n in FIGURES}
    plan.add_job("plot_connectors", exp.key, **figs,
                 pdfs=[plan.path(OUT["fig"], dataset=exp.dataset, model=exp.model, name=n, ext="pdf") for n in FIGURES])


def figure_inputs(plan: Plan, wc) -> dict:
    """The tables of the connector figures."""
    s = stage(plan, wc.dataset, wc.model)
    ids = dict(dataset=wc.dataset, model=wc.model)
    return {"path": plan.path(OUT["path"], connector=s["connector"], **ids),
            "cosines": plan.path(OUT["cosines"], connector=s["connector"], **ids),
            "short": plan.path(OUT["short"], connector=s["connector"], **ids),
            "surface": plan.path(OUT["m_surface"], mconnector=s["mconnector"], **ids),
            "centre": plan.path(OUT["centre"], mconnector=s["centre"], **ids)}


def stage(plan: Plan, dataset: str, model: str) -> dict:
    return plan.entry("connectors", (dataset, model), "connectors")


def optima(plan: Plan, wc) -> list[str]:
    """The two optima of connector ``wc.connector``."""
    cons = stage(plan, wc.dataset, wc.model)["connectors"]
    if wc.connector not in cons:
        raise ValueError(f"no connector {wc.connector} planned for {wc.dataset}/{wc.model}")
    return cons[wc.connector]["optima"]


def connector_tables(plan: Plan, exp, name: str) -> tuple[list[str], list[dict]]:
    """The ``name`` table (an OUT key) of every connector of ``exp`` and each one's pair columns."""
    cons = plan.stages.get("connectors", {}).get(exp.key)
    if not cons:
        return [], []
    items = cons["connectors"].items()
    return ([plan.path(OUT[name], dataset=exp.dataset, model=exp.model, connector=k) for k, _ in items],
            [{"seed_a": v["a"], "seed_b": v["b"]} for _, v in items])
