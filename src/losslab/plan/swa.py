"""Plan of the SWA stage (Fort & Jastrzebski 4.5): continued training from endpoints with each
learning rate and schedule, snapshots, SWA against the snapshot ensemble."""
from __future__ import annotations

from .core import Plan, PlanError, value_label

SWA_KEYS = ("optimizer", "momentum", "l2", "batch_size", "epochs", "snapshot_every", "cycle_min_ratio", "line_points")
RUN = "{dataset}/{model}/swa/{run}"
OUT = {
    "snapshots": RUN + "/snapshots.pt",
    "points": RUN + "/points.parquet",
    "lines": RUN + "/lines.parquet",
    "summary": RUN + "/summary.parquet",
    "all_summary": "{dataset}/{model}/swa/summary.parquet",
    "all_lines": "{dataset}/{model}/swa/lines.parquet",
    "fig": "{dataset}/{model}/figures/{name}.{ext}",
}
FIGURES = ("swa_accuracy", "swa_lines")
RUN_FILES = ("snapshots", "points", "lines", "summary")


def plan_swa(plan: Plan) -> None:
    from .endpoints import check_bn_batch

    s = plan.config["swa"]
    if not s["enabled"]:
        return
    exp = plan.main_experiment
    exp.setting(s["start_setting"], "swa.start_setting")
    if s["epochs"] // s["snapshot_every"] < 2:
        raise PlanError(f"swa.epochs = {s['epochs']} with swa.snapshot_every = {s['snapshot_every']} gives fewer "
                        "than 2 snapshots; raise swa.epochs or lower swa.snapshot_every")
    labels: dict = {}
    for i, lr in enumerate(s["lrs"]):
        lab = value_label(lr)
        if lab in labels:
            raise PlanError(f"swa.lrs[{i}] = {lr} and swa.lrs[{labels[lab][0]}] = {labels[lab][1]} both get the folder "
                            f"name lr{lab}; make them differ in their first 6 significant digits")
        labels[lab] = (i, lr)
    if exp.networks[s["start_setting"]]["bn_min_values"] == 1:
        check_bn_batch(exp, s["batch_size"], "swa.batch_size")
    runs = {}
    for seed in s["seeds"]:
        start = plan.need_endpoint(exp, s["start_setting"], seed, "swa.seeds")
        mine = {f"{schedule}/lr{lab}/seed{seed}": {"schedule": schedule, "lr": float(lr), "seed": seed, "start": start}
                for schedule in s["schedules"] for lab, (_, lr) in labels.items()}
        runs.update(mine)
        # one job per seed runs every (schedule, lr) from that endpoint: one start-up instead of many
        plan.add_job("swa_run", exp.key + (f"seed{seed}",),
                     **{k: [plan.path(OUT[k], dataset=exp.dataset, model=exp.model, run=r) for r in mine]
                        for k in RUN_FILES})
    plan.stages["swa"] = {exp.key: runs}
    ids = dict(dataset=exp.dataset, model=exp.model)
    plan.add_job("swa_summary", exp.key, summary=plan.path(OUT["all_summary"], **ids),
                 lines=plan.path(OUT["all_lines"], **ids))
    plan.add_job("plot_swa", exp.key, **{n: plan.path(OUT["fig"], name=n, ext="png", **ids) for n in FIGURES},
                 pdfs=[plan.path(OUT["fig"], name=n, ext="pdf", **ids) for n in FIGURES])


def runs(plan: Plan, dataset: str, model: str) -> dict:
    return plan.stages["swa"][(dataset, model)]


def grid(plan: Plan) -> list[str]:
    """``{schedule}/lr{lr}`` of every run, the same for every seed (``["none"]`` when SWA is off,
    so that the rule's outputs are never empty). ``swa.lrs`` and ``swa.schedules`` are shared by
    every experiment (losslab.plan.experiments), so one grid serves them all."""
    found = [rid for runs in plan.stages.get("swa", {}).values() for rid in runs]
    return sorted({rid.rsplit("/", 1)[0] for rid in found}) or ["none"]


def run_outputs(plan: Plan, name: str) -> list[str]:
    """Output templates (wildcards dataset, model, seed) of one seed's runs, file ``name``."""
    return [OUT[name].replace("{run}", f"{g}/seed{{seed}}") for g in grid(plan)]


def seed_runs(plan: Plan, wc) -> list[dict]:
    """The runs of seed ``wc.seed``, in the order of :func:`run_outputs`."""
    found = runs(plan, wc.dataset, wc.model)
    return [{"id": f"{g}/seed{wc.seed}", **found[f"{g}/seed{wc.seed}"]} for g in grid(plan)]


def tables(plan: Plan, wc) -> dict:
    """Every run's summary and lines tables (the gather's inputs)."""
    ids = sorted(runs(plan, wc.dataset, wc.model))
    return {key: [plan.path(OUT[n], dataset=wc.dataset, model=wc.model, run=r) for r in ids]
            for key, n in (("summaries", "summary"), ("lines", "lines"))}
