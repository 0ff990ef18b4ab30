# Stage: mode-connecting curves (Garipov et al.). Library: src/losslab/curves.py (training,
# evaluation, summaries) and src/losslab/curve_figures.py (figures from Parquet).
#   {BASE}/curves/{kind}{bends}/{setting}/seed{a}-seed{b}/
#       curve.pt                 final curve (format losslab.curve/1)
#       epochs/epoch{E:04d}.pt   curve after each epoch, E = 0 (initial) .. epochs
#       train_log.parquet        training loss per epoch
#       along.parquet            train/test loss, NLL, accuracy along t, curve AND line
#       summary.parquet          barriers and arc-length-weighted means per path
#       ensemble.parquet         ensemble of w1 with phi(t) (blog Figure 8)
# The 1-D regression problem (blog Figure 7) is its own experiment (regression1d / mlp), whose
# endpoints the endpoint rule trains; one bezier1 curve joins its seeds 0 and 1.

wildcard_constraints:
    kind="bezier|chain",
    bends="[0-9]+",
    a="[0-9]+",
    b="[0-9]+",


CURVES = config["curves"]
for _pair in CURVES["pairs"]:
    if _pair[0] == _pair[1]:
        raise ValueError(f"curves.pairs: {_pair} joins an endpoint to itself; use two different seeds")
if len({tuple(p) for p in CURVES["pairs"]}) != len(CURVES["pairs"]):
    raise ValueError(f"curves.pairs has duplicate pairs: {CURVES['pairs']}")

CURVE_KEYS = ("init", "epochs", "optimizer", "lr", "momentum", "schedule", "batch_size", "l2", "seed")
# (dataset, model) -> the curve settings of that experiment, its kinds/bends/setting/pairs.
CURVE_EXPERIMENTS = {
    (DS, MODEL): {
        "train": {k: CURVES[k] for k in CURVE_KEYS},
        "kinds": CURVES["kinds"], "bends": CURVES["bends"], "setting": CURVES["setting"], "pairs": CURVES["pairs"],
    }
}

REG = CURVES["regression"]
REG_KEY = ("regression1d", "mlp")
if REG["enabled"] and REG_KEY != (DS, MODEL):
    register_experiment(
        {"name": "regression1d", "data_dir": config["dataset"]["data_dir"], "download": False, "split_seed": 0,
         "test_fraction": 0.25, "augment": False},
        {"name": "mlp", "width": 1.0, "dropout": 0.0, "batchnorm": False,
         "options": {"hidden": REG["hidden"], "depth": REG["depth"], "activation": REG["activation"]}},
        {"optimizer": "adam", "lr": REG["lr"], "momentum": 0.9, "schedule": "constant",
         "batch_size": REG["batch_size"], "epochs": REG["endpoint_epochs"], "l2": 0.0},
        {"default": {}},
    )
    CURVE_EXPERIMENTS[REG_KEY] = {
        "train": {"init": "linear", "epochs": REG["epochs"], "optimizer": "adam", "lr": REG["lr"], "momentum": 0.9,
                  "schedule": "constant", "batch_size": REG["batch_size"], "l2": 0.0, "seed": 0},
        "kinds": ["bezier"], "bends": 1, "setting": "default", "pairs": [[0, 1]],
    }


def curve_dir(kind, bends, setting, a, b, dataset=None, model=None):
    """Folder of one curve: {RES}/{dataset}/{model}/curves/{kind}{bends}/{setting}/seed{a}-seed{b}."""
    return f"{RES}/{dataset or DS}/{model or MODEL}/curves/{kind}{bends}/{setting}/seed{a}-seed{b}"


def _curve_spec(ds, model, wildcards):
    """Only what the curve rules use: dataset, model, evaluation subsets, curve settings."""
    exp = EXPERIMENTS[(ds, model)]
    if wildcards.setting not in exp["settings"]:
        raise ValueError(f"curves.setting = {wildcards.setting!r} is not an endpoint setting of {ds}/{model}; "
                         f"known settings: {sorted(exp['settings'])}")
    spec = endpoint_params(type("W", (), {"dataset": ds, "model": model, "setting": wildcards.setting})())
    return canonical({"dataset": spec["dataset"], "model": spec["model"], "evaluation": spec["evaluation"],
                      "curve": CURVE_EXPERIMENTS[(ds, model)]["train"]})


def _endpoints(ds, model):
    def inputs(wc):
        return {"w1": endpoint_path(wc.setting, wc.a, dataset=ds, model=model),
                "w2": endpoint_path(wc.setting, wc.b, dataset=ds, model=model)}
    return inputs


for (_ds, _model), _cx in CURVE_EXPERIMENTS.items():
    _dir = f"{RES}/{_ds}/{_model}/curves/{{kind}}{{bends}}/{{setting}}/seed{{a}}-seed{{b}}"
    _tag = "" if (_ds, _model) == (DS, MODEL) else f"_{_ds}_{_model}"

    rule:
        name: f"train_curve{_tag}"
        input:
            unpack(_endpoints(_ds, _model)),
            code=lib("data", "models", "flat", "curves"),
        output:
            ckpt=f"{_dir}/curve.pt",
            log_table=f"{_dir}/train_log.parquet",
            epochs=[f"{_dir}/epochs/epoch{e:04d}.pt" for e in range(_cx["train"]["epochs"] + 1)],
        params:
            spec=lambda wc, _d=_ds, _m=_model: _curve_spec(_d, _m, wc),
            dataset=_ds,
            model=_model,
        log:
            f"logs/{_ds}/{_model}/curves/{{kind}}{{bends}}/{{setting}}/seed{{a}}-seed{{b}}/train.log",
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(runtime=120, mem_mb=8000),
        script:
            "../scripts/train_curve.py"

    rule:
        name: f"evaluate_curve{_tag}"
        input:
            unpack(_endpoints(_ds, _model)),
            code=lib("data", "models", "flat", "curves"),
            ckpt=f"{_dir}/curve.pt",
        output:
            along=f"{_dir}/along.parquet",
            summary=f"{_dir}/summary.parquet",
            ensemble=f"{_dir}/ensemble.parquet",
        params:
            spec=lambda wc, _d=_ds, _m=_model: _curve_spec(_d, _m, wc),
            points=CURVES["points"],
            dataset=_ds,
            model=_model,
        log:
            f"logs/{_ds}/{_model}/curves/{{kind}}{{bends}}/{{setting}}/seed{{a}}-seed{{b}}/evaluate.log",
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(runtime=60, mem_mb=8000),
        script:
            "../scripts/evaluate_curve.py"


def curve_outputs(name, ds=None, model=None):
    """One file of every configured curve of an experiment (default: the main one)."""
    key = (ds or DS, model or MODEL)
    cx = CURVE_EXPERIMENTS[key]
    return [f"{curve_dir(k, cx['bends'], cx['setting'], a, b, *key)}/{name}"
            for k in cx["kinds"] for a, b in cx["pairs"]]


rule curve_summary:
    input:
        code=lib("curves"),
        summaries=curve_outputs("summary.parquet"),
    output:
        table=f"{BASE}/curves/summary.parquet",
    log:
        f"logs/{DS}/{MODEL}/curves/summary.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/curve_summary.py"


rule plot_curves:
    input:
        code=lib("curve_figures"),
        along=curve_outputs("along.parquet"),
        ensemble=curve_outputs("ensemble.parquet"),
    output:
        along=report(f"{BASE}/figures/curves_along_t.png", caption="../report/curves_along_t.rst", category="Curves"),
        along_pdf=f"{BASE}/figures/curves_along_t.pdf",
        ensemble=report(f"{BASE}/figures/curves_ensemble.png", caption="../report/curves_ensemble.rst", category="Curves"),
        ensemble_pdf=f"{BASE}/figures/curves_ensemble.pdf",
    log:
        f"logs/{DS}/{MODEL}/figures/curves.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_curves.py"


ALL_TARGETS += [rules.curve_summary.output.table, rules.plot_curves.output.along, rules.plot_curves.output.ensemble]

if REG["enabled"] and REG_KEY in CURVE_EXPERIMENTS:
    REG_DIR = curve_dir("bezier", 1, "default", 0, 1, *REG_KEY)
    REG_BASE = f"{RES}/{REG_KEY[0]}/{REG_KEY[1]}"

    rule curve_predictions:
        input:
            code=lib("data", "models", "flat", "curves"),
            ckpt=f"{REG_DIR}/curve.pt",
        output:
            predictions=f"{REG_DIR}/predictions.parquet",
            data=f"{REG_DIR}/data.parquet",
        params:
            spec=lambda wc: _curve_spec(*REG_KEY, type("W", (), {"setting": "default"})()),
            ts=REG["ts"],
            grid=REG["grid"],
            x_range=REG["x_range"],
        log:
            f"logs/{REG_KEY[0]}/{REG_KEY[1]}/curves/predictions.log",
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(runtime=15, mem_mb=4000),
        script:
            "../scripts/curve_predictions.py"

    rule plot_curve_functions:
        input:
            code=lib("curve_figures"),
            predictions=rules.curve_predictions.output.predictions,
            data=rules.curve_predictions.output.data,
            along=f"{REG_DIR}/along.parquet",
        output:
            png=report(f"{REG_BASE}/figures/curve_functions.png", caption="../report/curve_functions.rst", category="Curves"),
            pdf=f"{REG_BASE}/figures/curve_functions.pdf",
        log:
            f"logs/{REG_KEY[0]}/{REG_KEY[1]}/figures/curve_functions.log",
        resources:
            **cpu_resources(),
        script:
            "../scripts/plot_curve_functions.py"

    ALL_TARGETS += [rules.plot_curve_functions.output.png, f"{REG_DIR}/summary.parquet"]

