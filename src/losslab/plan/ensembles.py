"""Plan of the ensembles stage: independent ensembles, FGE, snapshot ensembles and SWA, curve and
m-connector simplex ensembles, each at its training budget (epochs, the endpoints' included)."""
from __future__ import annotations

from .core import Plan, PlanError

DIR = "{dataset}/{model}/ensembles"
OUT = {
    "independent": DIR + "/independent.parquet",
    "fge": DIR + "/fge/seed{seed}.parquet",
    "fge_members": DIR + "/fge/seed{seed}.pt",
    "snapshots": DIR + "/snapshots/seed{seed}.parquet",
    "snapshot_members": DIR + "/snapshots/seed{seed}.pt",
    "curve": DIR + "/curve/{curve}.parquet",
    "simplex": DIR + "/simplex.parquet",
    "summary": DIR + "/summary.parquet",
    "fig": "{dataset}/{model}/figures/ensembles/{name}.{ext}",
}
FGE_KEYS = ("cycle_epochs", "n_members", "lr_max", "lr_min", "shape", "optimizer", "momentum", "l2", "batch_size")
SNAPSHOT_KEYS = ("lr", "epochs", "snapshot_every", "cycle_min_ratio", "optimizer", "momentum", "l2", "batch_size")


def plan_ensembles(plan: Plan) -> None:
    from . import connectors as con_plan
    from .curves import OUT as CURVE_OUT, experiment_curves
    from .endpoints import check_bn_batch

    e = plan.config["ensembles"]
    if not e["enabled"]:
        return
    exp = plan.main_experiment
    s = exp.setting(e["setting"], "ensembles.setting")
    if not s.trained:
        raise PlanError(f"ensembles.setting = {e['setting']!r} is an external setting: budgets count training "
                        "epochs, so name a trained setting")
    epochs = exp.setting_train(e["setting"])["epochs"]
    ids = dict(dataset=exp.dataset, model=exp.model)
    if e["fge"]["shape"] == "linear" and e["fge"]["cycle_epochs"] % 2:
        raise PlanError(f"ensembles.fge.cycle_epochs = {e['fge']['cycle_epochs']} must be even with shape 'linear' "
                        "(members are collected at the middle of a cycle, on an epoch boundary)")
    if e["snapshots"]["epochs"] // e["snapshots"]["snapshot_every"] < 2:
        raise PlanError(f"ensembles.snapshots.epochs = {e['snapshots']['epochs']} with snapshot_every = "
                        f"{e['snapshots']['snapshot_every']} gives fewer than 2 snapshots")
    if exp.networks[e["setting"]]["bn_min_values"] == 1:
        for part in ("fge", "snapshots"):
            check_bn_batch(exp, e[part]["batch_size"], f"ensembles.{part}.batch_size")
    stage = {"epochs": epochs, "setting": e["setting"],
             "independent": [plan.need_endpoint(exp, e["setting"], seed, "ensembles.seeds") for seed in e["seeds"]],
             "starts": {seed: plan.need_endpoint(exp, e["setting"], seed, "ensembles.starts") for seed in e["starts"]},
             "curves": [], "simplex": None, "tables": []}

    def table(name, **fields):
        """A method's table, gathered by ensemble_summary."""
        path = plan.path(OUT[name], **ids, **fields)
        stage["tables"].append(path)
        return path

    plan.add_job("ensemble_independent", exp.key, table=table("independent"))
    for seed in e["starts"]:
        plan.add_job("ensemble_fge", exp.key + (seed,), table=table("fge", seed=seed),
                     members=plan.path(OUT["fge_members"], seed=seed, **ids))
        plan.add_job("ensemble_snapshots", exp.key + (seed,), table=table("snapshots", seed=seed),
                     members=plan.path(OUT["snapshot_members"], seed=seed, **ids))
    if plan.config["curves"]["enabled"]:
        for c in experiment_curves(plan, exp.dataset, exp.model):
            if c["kind"] == e["curve"]["kind"] and c["alignment"] == "none" and c["setting"] == e["setting"]:
                stage["curves"].append({"id": c["id"], "epochs": c["train"]["epochs"],
                                        "ckpt": plan.path(CURVE_OUT["ckpt"], curve=c["id"], **ids)})
                plan.add_job("ensemble_curve", exp.key + (c["id"],), table=table("curve", curve=c["id"]))
    con = plan.stages.get("connectors", {}).get(exp.key)
    if con is not None and plan.config["connectors"]["setting"] == e["setting"]:
        c = plan.config["connectors"]
        r = c["mconnector"]["resolution"]
        nodes = (r + 1) * (r + 2) // 2 - 3  # interior nodes of the barycentric grid, each optimised
        batch = c["batch_size"] or exp.info["n_train"]
        stage["simplex"] = {"nodes": plan.path(con_plan.OUT["m_nodes"], mconnector=con["mconnector"], **ids),
                            "optima": con["m_optima"],
                            "budget": 3 * epochs + nodes * c["steps"] * min(batch, exp.info["n_train"]) / exp.info["n_train"]}
        plan.add_job("ensemble_simplex", exp.key, table=table("simplex"))
    plan.add_job("ensemble_summary", exp.key, table=plan.path(OUT["summary"], **ids))
    plan.add_job("plot_ensembles", exp.key,
                 **{n: plan.path(OUT["fig"], name=n, ext="png", **ids) for n in ("budget", "diversity")},
                 pdfs=[plan.path(OUT["fig"], name=n, ext="pdf", **ids) for n in ("budget", "diversity")])
    plan.stages["ensembles"] = {exp.key: stage}


def stage(plan: Plan, dataset: str, model: str) -> dict:
    return plan.entry("ensembles", (dataset, model), "ensembles")


def curve_of(plan: Plan, wc) -> dict:
    return next(c for c in stage(plan, wc.dataset, wc.model)["curves"] if c["id"] == wc.curve)


def spec(plan: Plan, wc) -> dict:
    """Dataset, model and evaluation of the setting every ensemble method starts from."""
    return plan.experiment_spec(wc.dataset, wc.model, stage(plan, wc.dataset, wc.model)["setting"])
