"""Plan of the planes stage: every loss plane, its tiles, renders (PNG/PDF, interactive HTML, VTK files
for ParaView) and curve-training animations.

Planes come from the ``planes`` section (three endpoints, a radial-well slice, one plane per
curve) and from other stages (the tunnel slices), all through :func:`add_plane`; a plane
defined twice under one name with different contents is refused.
"""
from __future__ import annotations

import math
import shutil

from .core import Experiment, Plan, PlanError

DIR = "{dataset}/{model}/planes/{plane}"
FIG = "{dataset}/{model}/figures/planes/{plane}"
OUT = {
    "plane": DIR + "/plane.pt",
    "points": DIR + "/points.parquet",
    "tile": DIR + "/tiles/tile{i}_{j}.parquet",
    "grid": DIR + "/grid.parquet",
    "track": DIR + "/track.parquet",
    "png": FIG + ".png",
    "pdf": FIG + ".pdf",
    "html": FIG + ".html",  # interactive 3-D surface (plotly, self-contained)
    "vts": FIG + ".vts",    # the grid for ParaView (VTK structured grid)
    "vtp": FIG + ".vtp",    # its points and curves for ParaView (VTK poly data)
    "gif": FIG + "-training.gif",
    "mp4": FIG + "-training.mp4",
}


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def add_plane(plan: Plan, exp: Experiment, name: str, kind: str, inputs: dict, spec: str, key: str,
              resolution: int | None = None, random: dict | None = None, epochs: str | None = None) -> None:
    """Define one plane of an experiment and plan its jobs.

    ``inputs``: label -> checkpoint (three points, one optimum, or a curve); ``spec``: the endpoint
    checkpoint that gives the model; ``resolution`` (default planes.resolution) is G of the G x G
    grid, run as min(planes.tiles_per_side, G)^2 tiles (one job for the whole plane when that is
    1); ``epochs``: a curve's per-epoch file (the training animation). A plane at another resolution gets tiles of about the same size:
    ceil(G / edge) per side, edge = ceil(planes.resolution / planes.tiles_per_side)."""
    pl = plan.config["planes"]
    res = resolution or pl["resolution"]
    if res == pl["resolution"]:
        n = min(pl["tiles_per_side"], res)
    else:
        edge = math.ceil(pl["resolution"] / pl["tiles_per_side"])
        n = min(res, math.ceil(res / edge))
    d = {"name": name, "kind": kind, "inputs": dict(inputs), "spec": spec, "resolution": res, "tiles": n,
         "random": random, "epochs": epochs, "key": key}
    planes = plan.stages.setdefault("planes", {})
    old = planes.get((exp.dataset, exp.model, name))
    if old is not None and {k: v for k, v in old.items() if k != "key"} != {k: v for k, v in d.items() if k != "key"}:
        raise PlanError(f"plane {name!r} of {exp.dataset}/{exp.model} is defined twice with different contents "
                        f"(by {old['key']} and by {key}); give one of them another name")
    planes[(exp.dataset, exp.model, name)] = d
    f = dict(dataset=exp.dataset, model=exp.model, plane=name)
    k = (exp.dataset, exp.model, name)
    if n == 1:  # one job: basis, the whole grid and its table (separate jobs would only add start-up)
        plan.add_job("plane_single", k, plane=plan.path(OUT["plane"], **f), points=plan.path(OUT["points"], **f),
                     grid=plan.path(OUT["grid"], **f))
    else:
        plan.add_job("plane_basis", k, plane=plan.path(OUT["plane"], **f), points=plan.path(OUT["points"], **f))
        for j in range(n):
            for i in range(n):
                plan.add_job("plane_tile", k + (i, j), tile=plan.path(OUT["tile"], i=i, j=j, **f))
        plan.add_job("plane_gather", k, grid=plan.path(OUT["grid"], **f))
    plan.add_job("plot_plane", k, **{n: plan.path(OUT[n], **f) for n in ("png", "pdf", "html", "vts", "vtp")})
    if kind == "curve":
        plan.add_job("curve_track", k, track=plan.path(OUT["track"], **f))
        anim = {"gif": plan.path(OUT["gif"], **f)}
        if have_ffmpeg():
            anim["mp4"] = plan.path(OUT["mp4"], **f)
        plan.add_job("animate_curve_training", k, **anim)


def plan_planes(plan: Plan) -> None:
    from .curves import OUT as CURVE_OUT, experiment_curves

    pl = plan.config["planes"]
    plan.stages.setdefault("planes", {})
    if not pl["enabled"]:
        return
    if pl["tiles_per_side"] > pl["resolution"]:
        raise PlanError(f"planes.tiles_per_side = {pl['tiles_per_side']} must not exceed planes.resolution = "
                        f"{pl['resolution']} (each tile needs at least one grid column)")
    exp = plan.main_experiment
    setting = pl["setting"]
    exp.setting(setting, "planes.setting")
    if pl["endpoints"]["enabled"]:
        seeds = pl["endpoints"]["seeds"]
        pts = {f"seed {s}": plan.need_endpoint(exp, setting, s, "planes.endpoints.seeds") for s in seeds}
        add_plane(plan, exp, "three-endpoints", "points", pts, pts[f"seed {seeds[0]}"], "planes.endpoints")
    if pl["random"]["enabled"]:
        r = pl["random"]
        ckpt = plan.need_endpoint(exp, setting, r["seed"], "planes.random.seed")
        add_plane(plan, exp, f"radial-seed{r['seed']}", "random", {f"seed {r['seed']}": ckpt}, ckpt, "planes.random",
                  random={k: r[k] for k in ("direction_seed", "normalization", "extent")})
    for e in plan.experiments.values():
        curves = experiment_curves(plan, e.dataset, e.model)
        first = (curves[0]["a"], curves[0]["b"]) if curves else None
        for c in curves:
            if pl["curves"] == "first" and (c["a"], c["b"]) != first:
                continue  # the other pairs are replicates of the curve claims, not planes
            name = "curve-" + c["id"].replace("/", "-")
            f = dict(dataset=e.dataset, model=e.model, curve=c["id"])
            add_plane(plan, e, name, "curve", {"curve": plan.path(CURVE_OUT["ckpt"], **f)}, c["w1"], "curves",
                      epochs=plan.path(CURVE_OUT["epochs"], **f))


def plane_def(plan: Plan, dataset: str, model: str, plane: str) -> dict:
    return plan.entry("planes", (dataset, model, plane), f"plane {plane!r}")


def single_tile_constraint(plan: Plan, single: bool) -> str:
    """Wildcard constraint of ``plane`` for the one-job planes (``single``) or the tiled ones."""
    import re

    planes = plan.stages.get("planes", {})
    one = {name for (_, _, name), d in planes.items() if d["tiles"] == 1}
    many = {name for (_, _, name), d in planes.items() if d["tiles"] > 1}
    if one & many:
        raise PlanError(f"planes {sorted(one & many)} are tiled in one experiment and not in another; give them "
                        "different names")
    names = "|".join(re.escape(n) for n in sorted(one)) or "(?!)"
    end = "(?![A-Za-z0-9_.+-])"
    return f"(?:{names}){end}" if single else f"(?!(?:{names}){end})[A-Za-z0-9_.+-]+"


def plot_inputs(plan: Plan, wc) -> dict:
    """The tables a plane's figure is drawn from (its curve track for a curve plane)."""
    names = ["grid", "points"] + (["track"] if plane_def(plan, wc.dataset, wc.model, wc.plane)["kind"] == "curve" else [])
    return {n: plan.path(OUT[n], dataset=wc.dataset, model=wc.model, plane=wc.plane) for n in names}


def tile_paths(plan: Plan, dataset: str, model: str, plane: str) -> list[str]:
    n = plane_def(plan, dataset, model, plane)["tiles"]
    return [plan.path(OUT["tile"], dataset=dataset, model=model, plane=plane, i=i, j=j)
            for j in range(n) for i in range(n)]
