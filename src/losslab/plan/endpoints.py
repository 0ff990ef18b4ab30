"""Plan of the endpoint stage: the main experiment, its settings, and every endpoint job.

Settings come from ``endpoints.settings`` (trained with overrides of ``endpoints.train``, ``width``
and ``dropout``); other stages add generated ones (the tunnel sweeps) before any consumer asks
for endpoints. Consumers call :meth:`Plan.need_endpoint`; :func:`finish` then plans one training
job per requested (setting, seed) and checks what training would trip on.
"""
from __future__ import annotations

from .. import catalog
from .core import Experiment, Plan, PlanError, Setting

EP = "{dataset}/{model}/endpoints/{setting}/seed{seed}"
OUT = {
    "ckpt": EP + "/model.pt",
    "metrics": EP + "/metrics.parquet",
    "summary": "{dataset}/{model}/endpoints/summary.parquet",
    "figure": "{dataset}/{model}/figures/endpoint_training.png",
    "figure_pdf": "{dataset}/{model}/figures/endpoint_training.pdf",
}


BUILTIN_ONLY = {"width": 1.0, "dropout": 0.0, "batchnorm": False}


def user_model(plan: Plan) -> bool:
    return catalog.model_kind(plan.config["model"]["name"]) != "builtin"


def add_main_experiment(plan: Plan) -> Experiment:
    """The configured dataset and model, their folder labels, and every configured setting:
    ``endpoints.settings`` (trained) and ``endpoints.external`` (imported checkpoints)."""
    c = plan.config
    d, m = c["dataset"], c["model"]
    try:
        labels = (d["label"] or catalog.dataset_label(d["name"], d["path"]), m["label"] or catalog.model_label(m["name"]))
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if user_model(plan):
        for k, default in BUILTIN_ONLY.items():
            if m[k] != default:
                raise PlanError(f"model.{k} = {m[k]!r} applies to the built-in models only; model.name = {m['name']!r} "
                                "is your own model: pass such choices to your factory through model.options")
    exp = Experiment(*labels, d, m, c["endpoints"]["train"], origin="dataset/model")
    for name, over in c["endpoints"]["settings"].items():
        if user_model(plan) and set(over) & set(BUILTIN_ONLY):
            k = sorted(set(over) & set(BUILTIN_ONLY))[0]
            raise PlanError(f"endpoints.settings.{name}.{k} applies to the built-in models only; model.name = "
                            f"{m['name']!r} is your own model: make it another model or use model.options")
        exp.add_setting(Setting(name, f"endpoints.settings.{name}", dict(over),
                                {k: f"endpoints.settings.{name}.{k}" for k in over}))
    for name, ext in c["endpoints"]["external"].items():
        paths, prefix = (ext, None) if isinstance(ext, list) else (ext["paths"], ext["strip_prefix"])
        exp.add_setting(Setting(name, f"endpoints.external.{name}", external=list(paths), strip_prefix=prefix))
    plan.experiments[exp.key] = exp
    plan.main = exp.key
    return exp


def plan_summary(plan: Plan) -> None:
    """The endpoint summary and training figure of the main experiment: every configured
    setting for every seed in ``endpoints.seeds``, and every external checkpoint."""
    exp = plan.main_experiment
    seeds = plan.config["endpoints"]["seeds"]
    members = [(s, seed) for s in sorted(plan.config["endpoints"]["settings"]) for seed in seeds]
    members += [(s, i) for s in sorted(plan.config["endpoints"]["external"]) for i in range(len(exp.settings[s].external))]
    if not members:
        return
    for s, seed in members:
        plan.need_endpoint(exp, s, seed, "endpoints.seeds")
    plan.stages["endpoints"] = {exp.key: {"members": members}}
    ids = dict(dataset=exp.dataset, model=exp.model)
    plan.add_job("endpoint_summary", exp.key, table=plan.path(OUT["summary"], **ids))
    plan.add_job("plot_endpoint_training", exp.key, png=plan.path(OUT["figure"], **ids),
                 pdf=plan.path(OUT["figure_pdf"], **ids))


def external_names(plan: Plan) -> list[str]:
    """Names of every external setting (their endpoints are imported, not trained)."""
    return sorted({n for e in plan.experiments.values() for n, s in e.settings.items() if not s.trained})


def external_file(plan: Plan, wc) -> dict:
    """The file of an external endpoint (``wc``: dataset, model, setting, seed) and how to read it."""
    s = plan.experiment(wc.dataset, wc.model).settings[wc.setting]
    return {"path": s.resolved[int(wc.seed)], "strip_prefix": s.strip_prefix,
            "key": f"endpoints.external.{wc.setting}[{wc.seed}]"}


def summary_metrics(plan: Plan, dataset: str, model: str) -> list[str]:
    members = plan.stages["endpoints"][(dataset, model)]["members"]
    return [plan.path(OUT["metrics"], dataset=dataset, model=model, setting=s, seed=seed) for s, seed in members]


def _origin(exp: Experiment, setting: str, key: str) -> str:
    s = exp.settings[setting]
    if key in s.origins:
        return s.origins[key]
    return "endpoints.train." + key if exp.origin == "dataset/model" else f"{exp.origin} ({key})"


def finish(plan: Plan) -> None:
    """One job per requested endpoint; BatchNorm minibatch checks for the trained ones."""
    ev = plan.config["evaluation"]
    for (ds, model, setting, seed), req in sorted(plan.endpoints.items()):
        exp = plan.experiment(ds, model)
        s = exp.settings[setting]
        ids = dict(dataset=ds, model=model, setting=setting, seed=seed)
        rule = "train_endpoint" if s.trained else "import_endpoint"
        plan.add_job(rule, (ds, model, setting, seed), ckpt=plan.path(OUT["ckpt"], **ids),
                     metrics=plan.path(OUT["metrics"], **ids))
        net = exp.networks[setting]
        if s.trained and net["bn_min_values"] == 1:
            bs = exp.setting_train(setting)["batch_size"]
            check_bn_batch(exp, bs, _origin(exp, setting, "batch_size"))
        if net["bn_min_values"] == 1:
            n_bn = min(ev["bn_size"], exp.info["n_train"])
            if n_bn % ev["bn_batch"] == 1:
                raise PlanError(f"evaluation.bn_size = {ev['bn_size']} (here {n_bn} samples) with "
                                f"evaluation.bn_batch = {ev['bn_batch']} leaves a last BatchNorm batch of one "
                                f"sample, which BatchNorm cannot normalise (model {model}); change either")


def check_bn_batch(exp: Experiment, batch_size: int, key: str, n: int | None = None) -> None:
    """Training a model with BatchNorm1d-like layers fails on a last minibatch of one sample."""
    n = exp.info["n_train"] if n is None else n
    if batch_size and n % batch_size == 1:
        raise PlanError(f"{key} = {batch_size} with {n} training samples of {exp.dataset} leaves a last "
                        f"minibatch of one sample, and model {exp.model} has BatchNorm layers that cannot "
                        f"normalise a single value per channel; use another batch size (e.g. {batch_size + 1})")
