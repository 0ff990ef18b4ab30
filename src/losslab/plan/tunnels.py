"""Plan of the tunnels stage (Fort & Jastrzebski 4.4): every swept value becomes an endpoint
setting ``<param>-<value>``; one radial-width job per setting, a gather, figures, and a 2-D slice
per setting through the planes stage."""
from __future__ import annotations

from ..seeds import derive_seed
from .core import Plan, PlanError, Setting, value_label
from .planes import add_plane

PARAMS = ("lr", "batch_size", "l2", "dropout", "width")
TUNNEL_KEYS = ("directions", "normalization", "r_max", "threshold_mode", "threshold", "profile_points",
               "bisection_steps", "direction_seed")
DIR = "{dataset}/{model}/tunnels"
OUT = {
    "widths": DIR + "/{setting}/widths.parquet",
    "profile": DIR + "/{setting}/profile.parquet",
    "all_widths": DIR + "/widths.parquet",
    "all_profiles": DIR + "/profiles.parquet",
    "summary": DIR + "/summary.parquet",
    "fig": "{dataset}/{model}/figures/{name}.{ext}",
}
FIGURES = ("tunnel_profiles", "tunnel_widths")


def active(plan: Plan) -> bool:
    t = plan.config["tunnels"]
    return t["enabled"] and any(t["sweep"][p] for p in PARAMS)


def add_sweep_settings(plan: Plan) -> None:
    """Register ``<param>-<value>`` settings (a value equal to the base reuses ``default``)."""
    from .endpoints import user_model

    rows = []
    exp = plan.main_experiment
    t = plan.config["tunnels"]
    if t["enabled"] and not active(plan):
        raise PlanError(f"tunnels.sweep: every list is empty ({', '.join(f'{p}: []' for p in PARAMS)}), so there is "
                        "nothing to sweep and no tunnel width to measure; list values under tunnels.sweep.<param> "
                        "(a value equal to the base setting measures the default endpoints), or set "
                        "tunnels.enabled: false")
    if active(plan):
        for param in ("width", "dropout"):
            if user_model(plan) and plan.config["tunnels"]["sweep"][param]:
                raise PlanError(f"tunnels.sweep.{param} = {plan.config['tunnels']['sweep'][param]} needs the built-in "
                                f"{param} option; model.name = {plan.config['model']['name']!r} is your own model: "
                                f"set tunnels.sweep.{param}: []")
        base_ok = plan.config["endpoints"]["settings"].get("default") == {}
        labels: dict = {}
        for param in PARAMS:
            for i, v in enumerate(plan.config["tunnels"]["sweep"][param]):
                key = f"tunnels.sweep.{param}[{i}]"
                base = exp.model_spec[param] if param in ("width", "dropout") else exp.train[param]
                if base_ok and float(v) == float(base):
                    name = "default"
                else:
                    name = f"{param}-{value_label(v)}"
                    if name in labels and labels[name][1] != v:
                        raise PlanError(f"{key} = {v} and {labels[name][0]} = {labels[name][1]} both get the folder "
                                        f"name {name!r}; make the values differ in their first 6 significant digits")
                    labels[name] = (key, v)
                    exp.add_setting(Setting(name, key, {param: v}, {param: key}))
                rows.append({"param": param, "value": float(v), "setting": name})
    plan.stages["tunnels"] = {exp.key: {"sweep": rows, "settings": sorted({r["setting"] for r in rows})}}


def stage(plan: Plan, dataset: str, model: str) -> dict:
    """The sweep of one experiment: rows (param, value, setting), settings, and each setting's checkpoints."""
    return plan.entry("tunnels", (dataset, model), "tunnel sweep")


def plan_tunnels(plan: Plan) -> None:
    t = plan.config["tunnels"]
    if not active(plan):
        return
    st = plan.stages["tunnels"][plan.main]
    if t["threshold_mode"] == "relative" and t["threshold"] <= 1:
        raise PlanError(f"tunnels.threshold = {t['threshold']} must be > 1 when tunnels.threshold_mode is "
                        "'relative' (the threshold is a multiple of the loss at the optimum)")
    sl = t["slices"]
    if sl["enabled"] and sl["seed"] not in t["seeds"]:
        raise PlanError(f"tunnels.slices.seed = {sl['seed']} is not in tunnels.seeds = {t['seeds']}; "
                        "the slice is drawn around one of the probed optima")
    exp = plan.main_experiment
    ids = dict(dataset=exp.dataset, model=exp.model)
    st["ckpts"] = {}
    for setting in st["settings"]:
        st["ckpts"][setting] = [plan.need_endpoint(exp, setting, s, "tunnels.seeds") for s in t["seeds"]]
        f = dict(ids, setting=setting)
        plan.add_job("tunnel_widths", exp.key + (setting,), widths=plan.path(OUT["widths"], **f),
                     profile=plan.path(OUT["profile"], **f))
        if sl["enabled"]:
            ckpt = plan.need_endpoint(exp, setting, sl["seed"], "tunnels.slices.seed")
            add_plane(plan, exp, f"tunnel-{setting}-seed{sl['seed']}", "random", {f"seed {sl['seed']}": ckpt}, ckpt,
                      "tunnels.slices", resolution=sl["resolution"],
                      random={"direction_seed": derive_seed(t["direction_seed"], "directions", sl["seed"]),
                              "normalization": "unit",
                              "extent": sl["extent"]})
    plan.add_job("tunnel_summary", exp.key, widths=plan.path(OUT["all_widths"], **ids),
                 profiles=plan.path(OUT["all_profiles"], **ids), summary=plan.path(OUT["summary"], **ids))
    plan.add_job("plot_tunnels", exp.key, **{f"{n}": plan.path(OUT["fig"], name=n, ext="png", **ids) for n in FIGURES},
                 pdfs=[plan.path(OUT["fig"], name=n, ext="pdf", **ids) for n in FIGURES])


def tables(plan: Plan, wc) -> dict:
    """Every setting's widths and profile tables (the gather's inputs)."""
    return {n: [plan.path(OUT[k], dataset=wc.dataset, model=wc.model, setting=s) for s in stage(plan, wc.dataset, wc.model)["settings"]]
            for n, k in (("widths", "widths"), ("profiles", "profile"))}
