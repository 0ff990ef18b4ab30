"""Several experiments in one run: the ``experiments:`` list.

Each entry ``{dataset, model, overrides}`` becomes a whole config of its own: the top level, with
the entry's ``dataset`` and ``model`` sections in place of the top-level ones (keys it does not
give take their defaults; ``dataset.data_dir`` and ``dataset.download`` follow the top level) and
its ``overrides`` merged on top, key by key (a list replaces a list). That config is validated
and planned exactly as a single run would be, every stage into ``results/<dataset>/<model>/``;
the plans are then merged into one. Whatever two experiments share is planned once: the toy
wedge model (it has no dataset), the 1-D regression of ``curves.regression``, and the scorecard.

Some keys cannot differ between experiments, because the run has one of them or because they
name a rule's outputs; an override of one is refused before any job (:data:`SHARED`). Every
message names the entry (``experiments[2] (mnist1d/cnn1d)``) and the key.
"""
from __future__ import annotations

import copy

from ..config import ConfigError, validate_config
from .. import catalog
from .core import Plan, PlanError

# Keys an entry's overrides may not change, and why.
SHARED = {
    "results_dir": "the run has one results folder",
    "compute": "the run has one compute section",
    "experiments": "entries do not nest",
    "dataset": "give the entry's own dataset: key instead",
    "model": "give the entry's own model: key instead",
    "wedge": "the toy wedge model has no dataset or model and runs once per run",
    "curves.regression": "the 1-D regression experiment (results/regression1d/mlp) runs once per run",
    "swa.lrs": "it names the SWA rule's output files, one set for every experiment",
    "swa.schedules": "it names the SWA rule's output files, one set for every experiment",
    "align.instability.epochs": "it names the spawn rule's output files, one set for every experiment",
    "endpoints.checkpoint_every": "jobs read the resumable-state cadence from the top level",
    "curves.checkpoint_every": "jobs read the resumable-state cadence from the top level",
}


def _paths(node, prefix=()):
    """Every dotted key path of a nested mapping (mappings are walked, other values are leaves)."""
    for k, v in node.items():
        path = prefix + (str(k),)
        yield path
        if isinstance(v, dict):
            yield from _paths(v, path)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def error_lines(exc: ConfigError) -> list[str]:
    """The message lines of a config error (without the 'invalid configuration:' header)."""
    if getattr(exc, "lines", None):
        return list(exc.lines)
    text = str(exc)
    return text.split("\n  ")[1:] if text.startswith("invalid configuration:") else [text]


def _section(value, what: str, where: str) -> dict:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return copy.deepcopy(value)
    raise PlanError(f"{where}.{what} = {value!r} must be a {what} name or a {what} section with a name, "
                    f"e.g. {what}: {'mnist1d' if what == 'dataset' else 'cnn1d'}")


def name_of(entry: dict) -> str:
    """``dataset/model`` of an entry as written (for messages before its labels are known)."""
    d, m = entry.get("dataset"), entry.get("model")
    d = d.get("name") if isinstance(d, dict) else d
    m = m.get("name") if isinstance(m, dict) else m
    return f"{d}/{m}"


def entry_configs(config: dict) -> list[tuple[str, dict]]:
    """(how messages name the entry, its validated whole config) for every ``experiments:`` entry."""
    out = []
    for i, entry in enumerate(config["experiments"]):
        where = f"experiments[{i}]"
        over = entry.get("overrides") or {}
        for path in _paths(over):
            dotted = ".".join(path)
            if dotted in SHARED:
                raise PlanError(f"{where} ({name_of(entry)}): overrides.{dotted} cannot differ between experiments: "
                                f"{SHARED[dotted]}; set it at the top level of the config")
        base = {k: v for k, v in config.items() if k not in ("experiments", "dataset", "model")}
        dataset = _section(entry["dataset"], "dataset", where)
        for k in ("data_dir", "download"):
            dataset.setdefault(k, config["dataset"][k])
        cfg = _merge(base, over)
        cfg["dataset"], cfg["model"] = dataset, _section(entry["model"], "model", where)
        cfg["experiments"] = []
        try:
            validate_config(cfg)
            labels = (cfg["dataset"]["label"] or catalog.dataset_label(cfg["dataset"]["name"], cfg["dataset"]["path"]),
                      cfg["model"]["label"] or catalog.model_label(cfg["model"]["name"]))
        except (ConfigError, ValueError) as exc:
            lines = error_lines(exc) if isinstance(exc, ConfigError) else [str(exc)]
            raise PlanError(*[f"{where} ({name_of(entry)}): {line}" for line in lines]) from None
        out.append((f"{where} ({labels[0]}/{labels[1]})", cfg))
    return out


def _same_experiment(a, b) -> bool:
    return (a.dataset_cfg == b.dataset_cfg and a.model_spec == b.model_spec and a.train == b.train
            and a.settings == b.settings)


def merge(config: dict, subs: list[tuple[str, Plan]]) -> Plan:
    """One plan from the experiments' plans: experiments, endpoint requests, stage data and jobs;
    a job two of them plan alike is one job, two runs may not write into one folder."""
    plan = Plan(config)
    owner: dict = {}
    for where, sub in subs:
        for key, exp in sub.experiments.items():
            old = plan.experiments.get(key)
            if old is None:
                plan.experiments[key] = exp
                owner[key] = (where, key == sub.main)
                continue
            first, first_is_run = owner[key]
            if key == sub.main or first_is_run:
                what = "curves.regression" if not (key == sub.main and first_is_run) else first
                raise PlanError(f"{where} writes into {plan.res}/{key[0]}/{key[1]}, as {what} does; give one of them "
                                "its own folder with dataset.label or model.label")
            if not _same_experiment(old, exp):
                raise PlanError(f"{where} defines {key[0]}/{key[1]} differently from {first}")
        plan.runs.append(sub.main)
        for (d, m, *rest), req in sub.endpoints.items():
            mine = plan.endpoints.setdefault((d, m, *rest), {"keys": []})
            mine["keys"] += [f"{where}: {k}" for k in req["keys"]]
        for name, entries in sub.stages.items():
            target = plan.stages.setdefault(name, {})
            for k, v in entries.items():
                target.setdefault(k, v)
        for (rule, *key), job in sub.jobs.items():
            try:
                plan.add_job(rule, tuple(key), **job.outputs)
            except PlanError as exc:
                raise PlanError(*[f"{where}: {line}" for line in exc.lines]) from None
    plan.main = plan.runs[0]
    return plan
