"""Plan of the scorecard: one final job that reads the summary tables of the main experiment's
stages (those that run) and writes results/scorecard.parquet and its report page."""
from __future__ import annotations

from .core import Plan

OUT = {"table": "scorecard.parquet", "page": "scorecard.html"}


def plan_scorecard(plan: Plan) -> None:
    plan.add_job("scorecard", (), table=plan.path(OUT["table"]), page=plan.path(OUT["page"]))


def inputs(plan: Plan) -> dict:
    """name -> table path(s) of the main experiment, for each stage that runs."""
    from . import connectors, curves, swa, tunnels, wedge

    exp = plan.main_experiment
    ids = dict(dataset=exp.dataset, model=exp.model)
    found: dict = {}
    mine = [c for c in curves.experiment_curves(plan, exp.dataset, exp.model) if c["alignment"] == "none"]
    if mine:
        found["curves_summary"] = plan.path(curves.OUT["gather"], **ids)
        found["curves_ensemble"] = [plan.path(curves.OUT["ensemble"], curve=c["id"], **ids) for c in mine]
    if ("wedge_hyperplanes",) in plan.jobs:
        found["hyperplanes"] = plan.path(wedge.OUT["hyperplanes"])
    con = plan.stages.get("connectors", {}).get(exp.key)
    if con:
        found["cosines"] = plan.path(connectors.OUT["cosines"], connector=con["connector"], **ids)
        found["short"] = plan.path(connectors.OUT["short"], connector=con["connector"], **ids)
        found["centre"] = plan.path(connectors.OUT["centre"], mconnector=con["centre"], **ids)
    if ("tunnel_summary",) + exp.key in plan.jobs:
        found["tunnels"] = plan.path(tunnels.OUT["summary"], **ids)
    if ("swa_summary",) + exp.key in plan.jobs:
        found["swa"] = plan.path(swa.OUT["all_summary"], **ids)
    return found
