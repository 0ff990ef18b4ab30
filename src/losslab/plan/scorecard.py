"""Plan of the scorecard: one final job that reads the replicate-level tables of the main
experiment's stages (those that run) and writes results/scorecard.parquet and its report page."""
from __future__ import annotations

from .core import Plan

OUT = {"table": "scorecard.parquet", "page": "scorecard.html", "landing": "report_landing.rst"}


def plan_scorecard(plan: Plan) -> None:
    plan.add_job("scorecard", (), table=plan.path(OUT["table"]), page=plan.path(OUT["page"]),
                 landing=plan.path(OUT["landing"]))


def tables(plan: Plan) -> dict[str, tuple[list[str], list[dict]]]:
    """Table name (``losslab.scorecard.TABLES``) -> (files, the columns naming each file's
    replicate), for each stage of the main experiment that runs."""
    from . import connectors, curves, swa, tunnels, wedge

    exp = plan.main_experiment
    ids = dict(dataset=exp.dataset, model=exp.model)
    found: dict = {}
    mine = [c for c in curves.experiment_curves(plan, exp.dataset, exp.model) if c["alignment"] == "none"]
    if mine:
        found["curves_summary"] = ([plan.path(curves.OUT["gather"], **ids)], [{}])
        for name, key in (("curves_ensemble", "ensemble"), ("curves_along", "along")):
            found[name] = ([plan.path(curves.OUT[key], curve=c["id"], **ids) for c in mine], [{} for _ in mine])
    if ("wedge_hyperplanes",) in plan.jobs:
        found["hyperplanes"] = ([plan.path(wedge.OUT["hyperplanes"])], [{}])
    con = plan.stages.get("connectors", {}).get(exp.key)
    if con:
        for name, key in (("cosines", "cosines"), ("connector_path", "path"), ("short", "short")):
            found[name] = connectors.connector_tables(plan, exp, key)
        found["centre"] = ([plan.path(connectors.OUT["centre"], mconnector=con["centre"], **ids)], [{}])
        found["surface"] = ([plan.path(connectors.OUT["m_surface"], mconnector=con["mconnector"], **ids)], [{}])
        found["short_matched"] = connectors.connector_tables(plan, exp, "short_matched")
        found["centre_matched"] = ([plan.path(connectors.OUT["centre_matched"], mconnector=con["centre"], **ids)], [{}])
    if ("tunnel_summary",) + exp.key in plan.jobs:
        found["tunnel_widths"] = ([plan.path(tunnels.OUT["all_widths"], **ids)], [{}])
    if ("swa_summary",) + exp.key in plan.jobs:
        found["swa"] = ([plan.path(swa.OUT["all_summary"], **ids)], [{}])
    return found


def inputs(plan: Plan) -> dict[str, list[str]]:
    return {name: files for name, (files, _) in tables(plan).items()}


def file_ids(plan: Plan) -> dict[str, list[dict]]:
    return {name: cols for name, (_, cols) in tables(plan).items()}
