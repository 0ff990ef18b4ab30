"""Plan of the curves stage (Garipov et al.): curves between endpoint pairs, their evaluation,
and the 1-D regression experiment of the blog's Figure 7.

A curve is identified by ``{kind}{bends}/{setting}/seed{a}-seed{b}`` under its experiment; the
rules read its definition (endpoints, training settings) from ``plan.stages["curves"]``.
"""
from __future__ import annotations

from .core import Experiment, Plan, PlanError, Setting, check_pairs

CURVE_KEYS = ("init", "epochs", "optimizer", "lr", "momentum", "schedule", "batch_size", "l2", "seed")
DIR = "{dataset}/{model}/curves/{curve}"
OUT = {
    "ckpt": DIR + "/curve.pt",
    "log_table": DIR + "/train_log.parquet",
    "epochs": DIR + "/epochs.pt",
    "along": DIR + "/along.parquet",
    "summary": DIR + "/summary.parquet",
    "ensemble": DIR + "/ensemble.parquet",
    "predictions": DIR + "/predictions.parquet",
    "data": DIR + "/data.parquet",
    "gather": "{dataset}/{model}/curves/summary.parquet",
    "along_png": "{dataset}/{model}/figures/curves_along_t.png",
    "along_pdf": "{dataset}/{model}/figures/curves_along_t.pdf",
    "ensemble_png": "{dataset}/{model}/figures/curves_ensemble.png",
    "ensemble_pdf": "{dataset}/{model}/figures/curves_ensemble.pdf",
    "functions_png": "{dataset}/{model}/figures/curves/{curve}/functions.png",
    "functions_pdf": "{dataset}/{model}/figures/curves/{curve}/functions.pdf",
}
REGRESSION = ("regression1d", "mlp")


def add_regression_experiment(plan: Plan) -> None:
    """The 1-D regression problem of blog Figure 7, as an experiment of its own (unless the main
    experiment is already that dataset and model: then its own curves are drawn as functions)."""
    c = plan.config["curves"]
    reg = c["regression"]
    main_is_it = (plan.config["dataset"]["name"], plan.config["model"]["name"]) == REGRESSION
    if not (c["enabled"] and reg["enabled"]) or main_is_it:
        return
    if REGRESSION in plan.experiments:
        raise PlanError(f"curves.regression needs the results folder {REGRESSION[0]}/{REGRESSION[1]}, which "
                        "another experiment uses; switch curves.regression.enabled off or relabel the other")
    exp = Experiment(
        *REGRESSION,
        {"name": "regression1d", "data_dir": plan.config["dataset"]["data_dir"], "download": False,
         "split_seed": 0, "test_fraction": 0.25, "augment": False},
        {"name": "mlp", "width": 1.0, "dropout": 0.0, "batchnorm": False,
         "options": {"hidden": reg["hidden"], "depth": reg["depth"], "activation": reg["activation"]}},
        {"optimizer": "adam", "lr": reg["lr"], "momentum": 0.9, "schedule": "constant",
         "batch_size": reg["batch_size"], "epochs": reg["endpoint_epochs"], "l2": 0.0},
        origin="curves.regression")
    exp.add_setting(Setting("default", "curves.regression"))
    plan.experiments[exp.key] = exp


def _curve_sets(plan: Plan) -> list[tuple[Experiment, dict, str]]:
    """(experiment, curve settings, config key) for every experiment that gets curves."""
    c = plan.config["curves"]
    out = []
    if not c["enabled"]:
        return out
    out.append((plan.main_experiment, {k: c[k] for k in ("kinds", "bends", "setting", "pairs", "points")}
                | {"train": {k: c[k] for k in CURVE_KEYS}}, "curves"))
    reg_exp = [e for e in plan.experiments.values() if e.origin == "curves.regression"]
    if reg_exp:
        reg = c["regression"]
        out.append((reg_exp[0],
                    {"kinds": ["bezier"], "bends": 1, "setting": "default", "pairs": [[0, 1]], "points": c["points"],
                     "train": {"init": "linear", "epochs": reg["epochs"], "optimizer": "adam", "lr": reg["lr"],
                               "momentum": 0.9, "schedule": "constant", "batch_size": reg["batch_size"],
                               "l2": 0.0, "seed": 0}}, "curves.regression"))
    return out


def plan_curves(plan: Plan) -> None:
    from .endpoints import check_bn_batch

    plan.stages["curves"] = {}
    for exp, cs, key in _curve_sets(plan):
        check_pairs(cs["pairs"], lambda i: f"{key}.pairs[{i}]" if key == "curves" else key, f"{key}.pairs")
        exp.setting(cs["setting"], f"{key}.setting")
        if exp.networks[cs["setting"]]["bn_min_values"] == 1:
            check_bn_batch(exp, cs["train"]["batch_size"], f"{key}.batch_size")
        for kind in cs["kinds"]:
            for i, (a, b) in enumerate(cs["pairs"]):
                where = f"{key}.pairs[{i}]" if key == "curves" else key
                w1 = plan.need_endpoint(exp, cs["setting"], a, where)
                w2 = plan.need_endpoint(exp, cs["setting"], b, where)
                add_curve(plan, exp, cs, kind, a, b, w1, w2)
        ids = dict(dataset=exp.dataset, model=exp.model)
        plan.add_job("curve_summary", exp.key, table=plan.path(OUT["gather"], **ids))
        plan.add_job("plot_curves", exp.key, along=plan.path(OUT["along_png"], **ids),
                     along_pdf=plan.path(OUT["along_pdf"], **ids), ensemble=plan.path(OUT["ensemble_png"], **ids),
                     ensemble_pdf=plan.path(OUT["ensemble_pdf"], **ids))


def add_curve(plan: Plan, exp: Experiment, cs: dict, kind: str, a: int, b: int, w1: str, w2: str,
              alignment: str = "none") -> None:
    """One curve from checkpoint ``w1`` to ``w2`` and its jobs; ``alignment``: how ``w2`` was
    aligned onto ``w1`` (the align stage), which names the curve ``seed{a}-seed{b}.{alignment}``."""
    cid = f"{kind}{cs['bends']}/{cs['setting']}/seed{a}-seed{b}" + (f".{alignment}" if alignment != "none" else "")
    plan.stages["curves"][(exp.dataset, exp.model, cid)] = {
        "id": cid, "kind": kind, "bends": cs["bends"], "setting": cs["setting"], "a": a, "b": b,
        "w1": w1, "w2": w2, "train": cs["train"], "points": cs["points"], "alignment": alignment}
    f = dict(dataset=exp.dataset, model=exp.model, curve=cid)
    k = (exp.dataset, exp.model, cid)
    plan.add_job("train_curve", k, ckpt=plan.path(OUT["ckpt"], **f),
                 log_table=plan.path(OUT["log_table"], **f), epochs=plan.path(OUT["epochs"], **f))
    plan.add_job("evaluate_curve", k, along=plan.path(OUT["along"], **f),
                 summary=plan.path(OUT["summary"], **f), ensemble=plan.path(OUT["ensemble"], **f))
    if is_function_regression(exp):
        plan.add_job("curve_predictions", k, predictions=plan.path(OUT["predictions"], **f),
                     data=plan.path(OUT["data"], **f))
        plan.add_job("plot_curve_functions", k, png=plan.path(OUT["functions_png"], **f),
                     pdf=plan.path(OUT["functions_pdf"], **f))


def add_aligned_curves(plan: Plan, exp: Experiment, setting: str, a: int, b: int, alignment: str,
                       w1: str, aligned: str) -> None:
    """The main curves' kinds between endpoint ``w1`` and the aligned copy of endpoint b."""
    main = [cs for e, cs, key in _curve_sets(plan) if key == "curves"]
    if not main:
        return
    cs = {**main[0], "setting": setting}
    for kind in cs["kinds"]:
        add_curve(plan, exp, cs, kind, a, b, w1, aligned, alignment)


def is_function_regression(exp: Experiment) -> bool:
    """A 1-D input, 1-output regression problem: its curves are drawn as functions (Figure 7)."""
    i = exp.info
    return i["task"] == "regression" and list(i["in_shape"]) == [1] and i["num_outputs"] == 1


def experiment_curves(plan: Plan, dataset: str, model: str) -> list[dict]:
    """The curves of one experiment, sorted by id."""
    return [c for (d, m, _), c in sorted(plan.stages.get("curves", {}).items()) if (d, m) == (dataset, model)]


def curve_inputs(plan: Plan, wc) -> dict:
    """The two endpoint checkpoints of curve ``wc.curve``."""
    c = curve_def(plan, wc.dataset, wc.model, wc.curve)
    return {"w1": c["w1"], "w2": c["w2"]}


def curve_spec(plan: Plan, wc) -> dict:
    """Only what the curve rules use: dataset, model, evaluation subsets, the curve's settings."""
    c = curve_def(plan, wc.dataset, wc.model, wc.curve)
    return {**plan.experiment_spec(wc.dataset, wc.model, c["setting"]),
            "curve": {**c["train"], "kind": c["kind"], "bends": c["bends"]},
            "ids": {"setting": c["setting"], "seed_a": c["a"], "seed_b": c["b"], "alignment": c["alignment"]}}


def curve_files(plan: Plan, wc, name: str) -> list[str]:
    """File ``name`` (an OUT key) of every curve of the experiment ``wc.dataset``/``wc.model``."""
    return [plan.path(OUT[name], dataset=wc.dataset, model=wc.model, curve=c["id"])
            for c in experiment_curves(plan, wc.dataset, wc.model)]


def curve_def(plan: Plan, dataset: str, model: str, curve: str) -> dict:
    return plan.entry("curves", (dataset, model, curve), f"curve {curve!r}")
