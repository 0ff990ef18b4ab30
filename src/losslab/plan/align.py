"""Plan of the align stage: straight lines between endpoints before and after aligning their
hidden units (weight / activation matching, REPAIR), curves between aligned endpoints, the
barrier against width, and Frankle et al.'s instability against the spawn epoch."""
from __future__ import annotations

from itertools import combinations

from .core import Plan, PlanError, Setting, value_label

METHODS = ("weight_matching", "activation_matching")
DIR = "{dataset}/{model}/align"
RUN = "{dataset}/{model}/instability/{spawn}"
OUT = {
    "aligned": DIR + "/{pair}/{method}.pt",
    "lines": DIR + "/{pair}/lines.parquet",
    "barriers": DIR + "/{pair}/barriers.parquet",
    "width": DIR + "/width/{setting}/barriers.parquet",
    "width_all": DIR + "/width.parquet",
    "state": RUN + "/states/epoch{k}.pt",
    "copy": RUN + "/k{k}/copy{c}.pt",
    "copy_line": RUN + "/k{k}/line.parquet",
    "instability": "{dataset}/{model}/instability/summary.parquet",
    "fig": "{dataset}/{model}/figures/align/{name}.{ext}",
}
FIGURES = {"lines": "plot_align_lines", "width": "plot_align_width", "instability": "plot_instability"}


def _on(plan: Plan, part: str | None = None) -> bool:
    a = plan.config["align"]
    return a["enabled"] and (part is None or a[part]["enabled"])


def width_setting(plan: Plan, w: float) -> str:
    exp = plan.main_experiment
    if plan.config["endpoints"]["settings"].get("default") == {} and float(w) == float(exp.model_spec["width"]):
        return "default"
    return f"width-{value_label(w)}"


def add_width_settings(plan: Plan) -> None:
    """Endpoint settings ``width-<w>`` for the width sweep (shared with the tunnel sweep's)."""
    from .endpoints import user_model

    if not _on(plan, "width"):
        return
    if user_model(plan):
        raise PlanError(f"align.width needs the built-in width option; model.name = {plan.config['model']['name']!r} "
                        "is your own model: set align.width.enabled: false")
    exp = plan.main_experiment
    for i, w in enumerate(plan.config["align"]["width"]["widths"]):
        name = width_setting(plan, w)
        if name != "default":
            key = f"align.width.widths[{i}]"
            exp.add_setting(Setting(name, key, {"width": w}, {"width": key}))


def _pairs(pairs, key: str) -> list[tuple[int, int]]:
    seen = []
    for i, (a, b) in enumerate(pairs):
        if a == b:
            raise PlanError(f"{key}[{i}] = {[a, b]} aligns an endpoint to itself; use two different seeds")
        if (a, b) in seen:
            raise PlanError(f"{key}[{i}] = {[a, b]} is listed twice in {key}")
        seen.append((a, b))
    return seen


def plan_align(plan: Plan, probe) -> None:
    """Every align job; the aligned curves are added to the curves stage (before the planes)."""
    from . import curves as curves_plan

    if not _on(plan):
        return
    a = plan.config["align"]
    exp = plan.main_experiment
    ids = dict(dataset=exp.dataset, model=exp.model)
    missing = [m for m in a["curves"] if m not in a["methods"]]
    if missing:
        raise PlanError(f"align.curves = {a['curves']} names {missing}, which align.methods = {a['methods']} does not "
                        "run; add them to align.methods")
    exp.setting(a["setting"], "align.setting")
    probe.align_spec(plan, exp, a["setting"], "align.setting")
    stage = {"pairs": {}, "widths": {}, "instability": None}
    for a_seed, b_seed in _pairs(a["pairs"], "align.pairs"):
        pid = f"{a['setting']}/seed{a_seed}-seed{b_seed}"
        w1 = plan.need_endpoint(exp, a["setting"], a_seed, "align.pairs")
        w2 = plan.need_endpoint(exp, a["setting"], b_seed, "align.pairs")
        aligned = {m: plan.path(OUT["aligned"], pair=pid, method=m, **ids) for m in a["methods"]}
        stage["pairs"][pid] = {"w1": w1, "w2": w2, "aligned": aligned, "setting": a["setting"],
                               "seed_a": a_seed, "seed_b": b_seed}
        for m in a["methods"]:
            plan.add_job("align_pair", exp.key + (pid, m), aligned=aligned[m])
        plan.add_job("align_lines", exp.key + (pid,), lines=plan.path(OUT["lines"], pair=pid, **ids),
                     barriers=plan.path(OUT["barriers"], pair=pid, **ids))
        if plan.config["curves"]["enabled"]:
            for m in a["curves"]:
                curves_plan.add_aligned_curves(plan, exp, a["setting"], a_seed, b_seed, m, w1, aligned[m])
    fig = {n: plan.path(OUT["fig"], name=n, ext="png", **ids) for n in FIGURES}
    plan.add_job("plot_align_lines", exp.key, png=fig["lines"],
                 pdf=plan.path(OUT["fig"], name="lines", ext="pdf", **ids))
    if _on(plan, "width"):
        wc = a["width"]
        pairs = list(combinations(wc["seeds"], 2))
        for w in wc["widths"]:
            name = width_setting(plan, w)
            probe.align_spec(plan, exp, name, "align.width.widths")
            stage["widths"][name] = {"width": float(w), "pairs": pairs,
                                     "ckpts": {s: plan.need_endpoint(exp, name, s, "align.width.seeds")
                                               for s in wc["seeds"]}}
            plan.add_job("align_width", exp.key + (name,), barriers=plan.path(OUT["width"], setting=name, **ids))
        plan.add_job("align_width_summary", exp.key, table=plan.path(OUT["width_all"], **ids))
        plan.add_job("plot_align_width", exp.key, png=fig["width"],
                     pdf=plan.path(OUT["fig"], name="width", ext="pdf", **ids))
    if _on(plan, "instability"):
        ins = a["instability"]
        s = exp.setting(ins["setting"], "align.instability.setting")
        if not s.trained:
            raise PlanError(f"align.instability.setting = {ins['setting']!r} is an external setting; spawning copies "
                            "continues a training run, so name a trained setting")
        epochs = exp.setting_train(ins["setting"])["epochs"]
        late = [k for k in ins["epochs"] if k >= epochs]
        if late:
            raise PlanError(f"align.instability.epochs = {ins['epochs']} has spawn epochs {late} at or after the end of "
                            f"training ({epochs} epochs of setting {ins['setting']!r}); use epochs below {epochs}")
        spawn = f"{ins['setting']}/seed{ins['seed']}"
        ks = sorted(ins["epochs"])
        stage["instability"] = {"spawn": spawn, "setting": ins["setting"], "seed": ins["seed"], "ks": ks}
        f = dict(ids, spawn=spawn)
        plan.add_job("spawn_states", exp.key + (spawn,),
                     states=[plan.path(OUT["state"], k=f"{k:04d}", **f) for k in ks])
        for k in ks:
            plan.add_job("instability_k", exp.key + (spawn, k),
                         copies=[plan.path(OUT["copy"], k=f"{k:04d}", c=c, **f) for c in (0, 1)],
                         line=plan.path(OUT["copy_line"], k=f"{k:04d}", **f))
        plan.add_job("instability_summary", exp.key, table=plan.path(OUT["instability"], **ids))
        plan.add_job("plot_instability", exp.key, png=fig["instability"],
                     pdf=plan.path(OUT["fig"], name="instability", ext="pdf", **ids))
    plan.stages["align"] = {exp.key: stage}


def stage(plan: Plan, dataset: str, model: str) -> dict:
    return plan.entry("align", (dataset, model), "align stage")


def pair_of(plan: Plan, wc) -> dict:
    return stage(plan, wc.dataset, wc.model)["pairs"][wc.pair]


def line_inputs(plan: Plan, wc) -> dict:
    """Both endpoints of a pair and every aligned copy of its second endpoint."""
    p = pair_of(plan, wc)
    return {"w1": p["w1"], "w2": p["w2"], "aligned": list(p["aligned"].values())}


def line_figure_inputs(plan: Plan, wc) -> dict:
    """Every pair's lines, and the along tables of the curves between those pairs' endpoints."""
    from .curves import OUT as CURVE_OUT, experiment_curves

    pairs = stage(plan, wc.dataset, wc.model)["pairs"]
    ids = dict(dataset=wc.dataset, model=wc.model)
    return {"lines": [plan.path(OUT["lines"], pair=p, **ids) for p in sorted(pairs)],
            "along": [plan.path(CURVE_OUT["along"], curve=c["id"], **ids)
                      for c in experiment_curves(plan, wc.dataset, wc.model)
                      if f"{c['setting']}/seed{c['a']}-seed{c['b']}" in pairs]}


def instability_of(plan: Plan, wc) -> dict:
    return stage(plan, wc.dataset, wc.model)["instability"]
