"""Run-plan core: experiments, their settings, endpoint requests, jobs, and errors naming keys.

Nothing here imports torch. :func:`losslab.plan.build_plan` fills a :class:`Plan` stage by stage
(in a fixed order); the rule files only read it.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from ..config import ConfigError, canonical

LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")
TRAIN_KEYS = ("optimizer", "lr", "momentum", "schedule", "batch_size", "epochs", "l2")
MODEL_KEYS = ("width", "dropout")


class PlanError(ConfigError):
    """A configuration the workflow cannot run; each line names the key, the value and what to do."""

    def __init__(self, *lines: str):
        self.lines = list(lines)
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


def value_label(v) -> str:
    """Path-safe text of a number: 0.003 -> '0.003', 1e6 -> '1e06' (no '+')."""
    return f"{v:g}".replace("e+", "e")


def key_text(path) -> str:
    """``("tunnels", "sweep", "lr", 2)`` -> ``tunnels.sweep.lr[2]``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@dataclass
class Setting:
    """A named way of getting endpoints: trained with overrides, or imported checkpoints."""

    name: str
    origin: str                   # dotted key that defines it
    overrides: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)   # overridden key -> dotted key of its value
    external: list | None = None  # checkpoint files of an external setting (seed i = file i)
    strip_prefix: str | None = None
    resolved: list = field(default_factory=list)  # the files found (working directory, then workflow folder)

    @property
    def trained(self) -> bool:
        return self.external is None


@dataclass
class Experiment:
    """One (dataset, model) pair: the folder ``{results}/{dataset}/{model}`` and its settings."""

    dataset: str                  # path label
    model: str                    # path label
    dataset_cfg: dict
    model_spec: dict
    train: dict
    origin: str                   # where it comes from: "dataset/model" or "curves.regression"
    settings: dict = field(default_factory=dict)   # name -> Setting
    info: dict | None = None      # dataset facts: in_shape, num_outputs, task, n_train, n_test
    networks: dict = field(default_factory=dict)   # setting name -> network facts (probe)
    config: dict | None = None    # the whole config its stages read (an `experiments:` entry's own)

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.model)

    def add_setting(self, s: Setting) -> None:
        old = self.settings.get(s.name)
        if old is None:
            self.settings[s.name] = s
            return
        same = (old.overrides == s.overrides and old.external == s.external and old.strip_prefix == s.strip_prefix)
        if not same:
            raise PlanError(f"setting {s.name!r} is defined twice with different values: at {old.origin} "
                            f"({old.external or old.overrides}) and at {s.origin} ({s.external or s.overrides}); "
                            "rename one of them")

    def setting(self, name: str, key: str) -> Setting:
        if name not in self.settings:
            raise PlanError(f"{key} = {name!r} is not an endpoint setting of {self.dataset}/{self.model}; "
                            f"known settings: {', '.join(sorted(self.settings))} (define it under "
                            "endpoints.settings or endpoints.external)")
        return self.settings[name]

    def setting_model(self, name: str) -> dict:
        spec = copy.deepcopy(self.model_spec)
        for k in MODEL_KEYS:
            if k in self.settings[name].overrides:
                spec[k] = self.settings[name].overrides[k]
        return canonical(spec)

    def setting_train(self, name: str) -> dict:
        over = self.settings[name].overrides
        return canonical({**self.train, **{k: v for k, v in over.items() if k in TRAIN_KEYS}})


@dataclass
class Job:
    rule: str
    outputs: dict                 # name -> path or list of paths


class Plan:
    """Everything the workflow will do, as plain data (see :func:`losslab.plan.build_plan`)."""

    def __init__(self, config: dict):
        self.config = config
        self.res = config["results_dir"]
        self.experiments: dict[tuple[str, str], Experiment] = {}
        self.main: tuple[str, str] | None = None
        self.runs: list[tuple[str, str]] = []      # the configured experiments (dataset, model), in order
        self.jobs: dict[tuple, Job] = {}
        self.endpoints: dict[tuple, dict] = {}    # (dataset, model, setting, seed) -> request info
        self.stages: dict[str, dict] = {}          # stage name -> its own plan data

    # ---- paths and jobs -------------------------------------------------------------------
    def path(self, template: str, **fields) -> str:
        return f"{self.res}/{template.format(**fields)}"

    def add_job(self, rule: str, key, **outputs) -> None:
        """Record one job of the DAG and its outputs (every output is a target of rule all)."""
        full = (rule,) + tuple(key)
        old = self.jobs.get(full)
        if old is not None and old.outputs != outputs:
            raise PlanError(f"two definitions of one {rule} job {key}: {old.outputs} vs {outputs}")
        self.jobs[full] = Job(rule, outputs)

    def entry(self, stage: str, key: tuple, what: str):
        """The plan data of one ``stage`` entry (``key`` starts with dataset, model); a key the plan
        did not make (a hand-typed wildcard) is an error naming ``what`` was asked for."""
        try:
            return self.stages[stage][key]
        except KeyError:
            raise ValueError(f"no {what} planned for {key[0]}/{key[1]}") from None

    @property
    def targets(self) -> list[str]:
        out: list[str] = []
        for job in self.jobs.values():
            for v in job.outputs.values():
                out.extend(v if isinstance(v, list) else [v])
        return sorted(dict.fromkeys(out))

    # ---- experiments and endpoints ----------------------------------------------------------
    def experiment(self, dataset: str, model: str) -> Experiment:
        key = (dataset, model)
        if key not in self.experiments:
            raise ValueError(f"no experiment {dataset}/{model}; planned: {sorted(self.experiments)}")
        return self.experiments[key]

    @property
    def main_experiment(self) -> Experiment:
        return self.experiments[self.main]

    def config_of(self, dataset: str, model: str) -> dict:
        """The config an experiment's stages read: its ``experiments:`` entry merged on the top
        level (or the top level itself in a single-experiment run)."""
        return self.experiment(dataset, model).config or self.config

    def need_endpoint(self, exp: Experiment, setting: str, seed: int, key: str) -> str:
        """The checkpoint of endpoint (setting, seed); the endpoint stage plans the job making it."""
        s = exp.setting(setting, key)
        if not s.trained and not 0 <= int(seed) < len(s.external):
            raise PlanError(f"{key} asks for seed {seed} of setting {setting!r}, which has "
                            f"{len(s.external)} external checkpoints ({s.origin}); seeds of an external "
                            f"setting are the positions 0..{len(s.external) - 1} in its list")
        req = self.endpoints.setdefault((exp.dataset, exp.model, setting, int(seed)), {"keys": []})
        req["keys"].append(key)
        from .endpoints import OUT  # the endpoint stage owns the endpoint paths

        return self.path(OUT["ckpt"], dataset=exp.dataset, model=exp.model, setting=setting, seed=seed)

    def endpoint_params(self, dataset: str, model: str, setting: str) -> dict:
        """What endpoint training (or import) and every stage building the network use."""
        exp = self.experiment(dataset, model)
        exp.setting(setting, "setting")
        return canonical({"dataset": exp.dataset_cfg, "model": exp.setting_model(setting),
                          "train": exp.setting_train(setting), "evaluation": self.config_of(dataset, model)["evaluation"]})

    def experiment_spec(self, dataset: str, model: str, setting: str) -> dict:
        """Dataset, model and evaluation of a setting: what builds and evaluates its network."""
        spec = self.endpoint_params(dataset, model, setting)
        return {k: spec[k] for k in ("dataset", "model", "evaluation")}

    def network(self, exp: Experiment, setting: str) -> dict:
        """Network facts of a setting (parameter count, BatchNorm, ...) from the probe."""
        return exp.networks[setting]


def check_pairs(pairs, where, listed_in: str, thing: str = "endpoint", unordered: bool = False) -> None:
    """Refuse a pair that joins a seed to itself or repeats an earlier pair (``unordered``: in
    either order); ``where(i)`` names the i-th pair's key."""
    seen: set = set()
    for i, (a, b) in enumerate(pairs):
        if a == b:
            raise PlanError(f"{where(i)} = {[a, b]} joins an {thing} to itself; use two different seeds")
        if (a, b) in seen or (unordered and (b, a) in seen):
            raise PlanError(f"{where(i)} = {[a, b]} is listed twice in {listed_in}")
        seen.add((a, b))


# Seed lists whose default (the schema's) is trimmed to the seeds an external setting has:
# (list key, key of the setting it reads, how its items name seeds: "seed" or "pair").
SEED_LISTS = (
    ("curves.pairs", "curves.setting", "pair"),
    ("connectors.pairs", "connectors.setting", "pair"),
    ("connectors.mconnector.centre_seeds", "connectors.setting", "seed"),
    ("swa.seeds", "swa.start_setting", "seed"),
    ("ensembles.seeds", "ensembles.setting", "seed"),
    ("ensembles.starts", "ensembles.setting", "seed"),
    ("align.pairs", "align.setting", "pair"),
)


def _get(node: dict, dotted: str):
    for part in dotted.split("."):
        node = node[part]
    return node


def _schema_default(schema: dict, dotted: str):
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    return node.get("default")


def derive_seed_lists(plan: "Plan", schema: dict) -> None:
    """Seed lists left at their default follow the seeds their setting has: for a setting of n
    external checkpoints, seeds >= n (and pairs naming them) are dropped, and
    ``connectors.mconnector.centre_n`` (at its default) keeps the n it can still reach. A list
    the user set is kept as written and checked as usual."""
    exp = plan.main_experiment
    for key, setting_key, kind in SEED_LISTS:
        section = key.split(".")[0]
        if not plan.config.get(section, {}).get("enabled", True):
            continue
        s = exp.settings.get(_get(plan.config, setting_key))
        value = _get(plan.config, key)
        if s is None or s.trained or value != _schema_default(schema, key):
            continue
        n = len(s.external)
        keep = [v for v in value if (max(v) if kind == "pair" else v) < n]
        parent = _get(plan.config, key.rsplit(".", 1)[0])
        parent[key.rsplit(".", 1)[1]] = keep
        if key == "connectors.mconnector.centre_seeds":
            mc = plan.config["connectors"]["mconnector"]
            if mc["centre_n"] == _schema_default(schema, "connectors.mconnector.centre_n"):
                mc["centre_n"] = [m for m in mc["centre_n"] if m <= len(keep)]
        if not keep:
            raise PlanError(f"{key} (default {value}) needs seeds that setting {s.name!r} ({s.origin}) does not "
                            f"have: it has {n} checkpoints; set {key} to seeds 0..{n - 1}")
