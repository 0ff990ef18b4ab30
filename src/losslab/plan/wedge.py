"""Plan of the toy wedge stage (Fort & Jastrzebski section 3): three experiments and their figures."""
from __future__ import annotations

from .core import Plan, PlanError

TOY = "toy_wedge"
OUT = {
    "hyperplanes": TOY + "/hyperplanes.parquet",
    "tunnel_path": TOY + "/tunnel_path.parquet",
    "tunnel_cosines": TOY + "/tunnel_cosines.parquet",
    "tunnel_summary": TOY + "/tunnel_summary.parquet",
    "radial": TOY + "/radial.parquet",
    "fig": TOY + "/figures/{name}.{ext}",
}
FIGURES = ("hyperplanes", "tunnel", "radial")


def plan_wedge(plan: Plan) -> None:
    w = plan.config["wedge"]
    if not w["enabled"]:
        return
    if w["s"] >= w["D"]:
        raise PlanError(f"wedge.s = {w['s']} must be smaller than wedge.D = {w['D']} "
                        "(s >= D leaves no long direction)")
    big = [d for d in w["hyperplanes"]["dims"] if d > w["D"]]
    if big:
        raise PlanError(f"wedge.hyperplanes.dims {big} exceed the parameter count wedge.D = {w['D']}; "
                        f"use dimensions <= {w['D']}")
    if w["tunnel"]["d"] is not None and w["tunnel"]["d"] > w["D"] - 1:
        raise PlanError(f"wedge.tunnel.d = {w['tunnel']['d']} exceeds the {w['D'] - 1} directions orthogonal to "
                        f"the line in wedge.D = {w['D']} dimensions; use at most {w['D'] - 1} or null")
    p = plan.path
    plan.add_job("wedge_hyperplanes", (), table=p(OUT["hyperplanes"]))
    plan.add_job("wedge_tunnel", (), path=p(OUT["tunnel_path"]), cosines=p(OUT["tunnel_cosines"]),
                 summary=p(OUT["tunnel_summary"]))
    plan.add_job("wedge_radial", (), table=p(OUT["radial"]))
    plan.add_job("plot_wedge", (), **{n: p(OUT["fig"], name=n, ext="png") for n in FIGURES},
                 pdfs=[p(OUT["fig"], name=n, ext="pdf") for n in FIGURES])
