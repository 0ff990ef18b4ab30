# Helpers shared by every stage: paths, experiments, settings, resources, library inputs.
import copy
import json

from losslab.config import canonical, library_closure

RES = config["results_dir"]
ALL_TARGETS = []  # each stage appends what `snakemake` (rule all) should build


def lib(*modules):
    """Library modules a rule's script imports, as inputs, with everything they import in turn
    (read from the sources), so editing any module reruns exactly the rules that depend on it."""
    return [str(SRC / "losslab" / f"{m}.py") for m in library_closure(("__init__", "io", "device") + modules)]


def gpu_resources(runtime=60, mem_mb=4000):
    """Resources of a GPU-tagged rule. compute.gpus_per_job: 0 makes it CPU-only."""
    res = {"runtime": runtime, "mem_mb": mem_mb}
    if config["compute"]["gpus_per_job"] > 0:
        res["gpu"] = config["compute"]["gpus_per_job"]
    return res


def cpu_resources(runtime=15, mem_mb=2000):
    return {"runtime": runtime, "mem_mb": mem_mb}


# ---- experiments: (dataset, model) pairs the endpoint rule can train ---------------------
# The configured dataset/model is the main experiment; stages may register more (for example
# the 1-D regression problem of the curves stage).
EXPERIMENTS = {}


def register_experiment(dataset_cfg, model_spec, train, settings):
    key = (dataset_cfg["name"], model_spec["name"])
    EXPERIMENTS[key] = {
        "dataset": dataset_cfg,
        "model": model_spec,
        "train": train,
        "settings": dict(settings),
    }
    return key


DS = config["dataset"]["name"]
MODEL = config["model"]["name"]
BASE = f"{RES}/{DS}/{MODEL}"
register_experiment(config["dataset"], config["model"], config["endpoints"]["train"], config["endpoints"]["settings"])


def register_setting(name, overrides, dataset=None, model=None):
    """Add a generated setting (a sweep value) to an experiment; the endpoint rule trains it."""
    exp = EXPERIMENTS[(dataset or DS, model or MODEL)]
    old = exp["settings"].get(name)
    if old is not None and old != overrides:
        raise ValueError(f"setting {name!r} is defined twice with different values: {old} vs {overrides}")
    exp["settings"][name] = dict(overrides)


def experiment(wildcards):
    key = (wildcards.dataset, wildcards.model)
    if key not in EXPERIMENTS:
        raise ValueError(f"no experiment for dataset {key[0]!r} and model {key[1]!r}; configured: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[key]


def endpoint_params(wildcards):
    """Only what endpoint training uses: dataset, model, merged train settings, evaluation."""
    exp = experiment(wildcards)
    if wildcards.setting not in exp["settings"]:
        raise ValueError(f"unknown setting {wildcards.setting!r}; known: {sorted(exp['settings'])}")
    over = exp["settings"][wildcards.setting]
    model = copy.deepcopy(exp["model"])
    for k in ("width", "dropout"):
        if k in over:
            model[k] = over[k]
    train = {**exp["train"], **{k: v for k, v in over.items() if k not in ("width", "dropout")}}
    return canonical({"dataset": exp["dataset"], "model": model, "train": train, "evaluation": config["evaluation"]})


def endpoint_path(setting, seed, name="model.pt", dataset=None, model=None):
    return f"{RES}/{dataset or DS}/{model or MODEL}/endpoints/{setting}/seed{seed}/{name}"


wildcard_constraints:
    dataset="[A-Za-z0-9_]+",
    model="[A-Za-z0-9_]+",
    setting="[A-Za-z0-9_.-]+",
    seed="[0-9]+",
