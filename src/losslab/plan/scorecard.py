"""Plan of the scorecard: one final job that reads the replicate-level tables of every
experiment's stages (those that run) and writes results/scorecard.parquet (one row per experiment
and claim: the claims matrix) and its report page."""
from __future__ import annotations

from .core import Plan

OUT = {"table": "scorecard.parquet", "page": "scorecard.html", "landing": "report_landing.rst"}


def plan_scorecard(plan: Plan) -> None:
    plan.add_job("scorecard", (), table=plan.path(OUT["table"]), page=plan.path(OUT["page"]),
                 landing=plan.path(OUT["landing"]))


def tables(plan: Plan, run: tuple[str, str] | None = None) -> dict[str, tuple[list[str], list[dict]]]:
    """Table name (``losslab.scorecard.TABLES``) -> (files, the columns naming each file's
    replicate), for each stage of experiment ``run`` (default: the first) that runs."""
    from . import connectors, curves, swa, tunnels, wedge

    exp = plan.experiments[run or plan.main]
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


def _all(plan: Plan) -> dict[str, tuple[str, str, list[str], list[dict]]]:
    """Input name ``e<i>_<table>`` -> (experiment label, table name, files, columns) over every
    configured experiment, in the plan's order."""
    out = {}
    for i, key in enumerate(plan.runs):
        for name, (files, cols) in tables(plan, key).items():
            out[f"e{i}_{name}"] = ("/".join(key), name, files, cols)
    return out


def inputs(plan: Plan) -> dict[str, list[str]]:
    return {k: files for k, (_, _, files, _) in _all(plan).items()}


def file_ids(plan: Plan) -> dict[str, dict]:
    """Input name -> which experiment and table it is, and each file's replicate columns."""
    return {k: {"experiment": e, "table": name, "cols": cols} for k, (e, name, _, cols) in _all(plan).items()}


def experiments(plan: Plan) -> list[str]:
    """The experiments' labels (``dataset/model``), in the order of the matrix's columns."""
    return ["/".join(k) for k in plan.runs]
