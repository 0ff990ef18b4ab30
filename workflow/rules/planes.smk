# Stage: loss planes. Library: src/losslab/planes.py (engine, bases, grids), src/losslab/plane_render.py
# (figures, animation). Scatter-gather per plane under results/{dataset}/{model}/planes/{plane}/:
#   plane_basis  -> plane.pt (origin, e1, e2, grid bounds) + points.parquet (defining points' x, y)
#   plane_tile   -> tiles/tile{i}_{j}.parquet, one GPU-tagged job per tile (tiles_per_side^2 jobs)
#   plane_gather -> grid.parquet (all G x G points, train and test)
#   plot_plane   -> figures/planes/{plane}.png/.pdf (reads Parquet only)
# Curve planes (when the curves stage is present): curve_track projects every saved curve epoch
# on the final curve's plane (track.parquet); animate_curve_training draws one frame per epoch.
import shutil

PL = config["planes"]
if PL["tiles_per_side"] > PL["resolution"]:
    raise ValueError(f"planes.tiles_per_side ({PL['tiles_per_side']}) must not exceed planes.resolution ({PL['resolution']})")

# (dataset, model, plane name) -> definition: kind, defining checkpoints, spec checkpoint
PLANES = {}


def register_plane(name, kind, inputs, spec_ckpt, dataset=None, model=None, resolution=None, **extra):
    """Define a plane; its render (and animation), and its tiles, become targets of rule all.

    `resolution` (default planes.resolution) is the plane's G; it runs as
    min(planes.tiles_per_side, G)^2 tiles. Tiles are targets too: Snakemake 9 does not rebuild a
    deleted intermediate file whose descendants are up to date, and a deleted tile must be
    recomputed (then gathered and drawn).
    """
    res = resolution or PL["resolution"]
    n = min(PL["tiles_per_side"], res)
    PLANES[(dataset or DS, model or MODEL, name)] = {"kind": kind, "inputs": dict(inputs), "spec": spec_ckpt,
                                                     "resolution": res, "tiles": n, **extra}
    ALL_TARGETS.extend(tile_paths(plane_dir(name, dataset, model), n))
    ALL_TARGETS.append(plane_figure(name, dataset=dataset, model=model))
    if kind == "curve" and extra.get("epochs"):
        ALL_TARGETS.append(plane_figure(name + "-training", "gif", dataset=dataset, model=model))


def plane_def(wildcards):
    key = (wildcards.dataset, wildcards.model, wildcards.plane)
    if key not in PLANES:
        raise ValueError(f"no plane {key[2]!r} for {key[0]}/{key[1]}; configured: {sorted(k[2] for k in PLANES)}")
    return PLANES[key]


def tile_paths(plane_folder, n):
    """The n x n tile tables of one plane."""
    return [f"{plane_folder}/tiles/tile{i}_{j}.parquet" for j in range(n) for i in range(n)]


def plane_dir(name, dataset=None, model=None):
    return f"{RES}/{dataset or DS}/{model or MODEL}/planes/{name}"


def plane_figure(name, ext="png", dataset=None, model=None):
    return f"{RES}/{dataset or DS}/{model or MODEL}/figures/planes/{name}.{ext}"


if PL["setting"] not in config["endpoints"]["settings"]:
    raise ValueError(f"planes.setting {PL['setting']!r} is not in endpoints.settings ({sorted(config['endpoints']['settings'])})")
if PL["endpoints"]["enabled"]:
    _s = PL["endpoints"]["seeds"]
    register_plane("three-endpoints", "points",
                   {f"seed {s}": endpoint_path(PL["setting"], s) for s in _s}, endpoint_path(PL["setting"], _s[0]))
if PL["random"]["enabled"]:
    _r = PL["random"]
    register_plane(f"radial-seed{_r['seed']}", "random", {f"seed {_r['seed']}": endpoint_path(PL["setting"], _r["seed"])},
                   endpoint_path(PL["setting"], _r["seed"]),
                   random={k: _r[k] for k in ("direction_seed", "normalization", "extent")})

CURVE_PLANES = []  # (dataset, model, name): planes that get a curve track (+ animation when epochs exist)
if "curves" in config:
    _c = config["curves"]
    for _kind in _c["kinds"]:
        for _a, _b in _c["pairs"]:
            _name = f"curve-{_kind}{_c['bends']}-{_c['setting']}-seed{_a}-seed{_b}"
            _dir = f"{BASE}/curves/{_kind}{_c['bends']}/{_c['setting']}/seed{_a}-seed{_b}"
            register_plane(_name, "curve", {"curve": f"{_dir}/curve.pt"}, endpoint_path(_c["setting"], _a),
                           epochs=[f"{_dir}/epochs/epoch{e:04d}.pt" for e in range(_c["epochs"] + 1)])
            CURVE_PLANES.append((DS, MODEL, _name))
if config.get("curves", {}).get("regression", {}).get("enabled"):
    _dir = f"{RES}/regression1d/mlp/curves/bezier1/default/seed0-seed1"
    register_plane("curve-bezier1-default-seed0-seed1", "curve", {"curve": f"{_dir}/curve.pt"},
                   endpoint_path("default", 0, dataset="regression1d", model="mlp"),
                   dataset="regression1d", model="mlp", epochs=[])
    CURVE_PLANES.append(("regression1d", "mlp", "curve-bezier1-default-seed0-seed1"))


def plane_params(wildcards):
    d = plane_def(wildcards)
    return {"name": wildcards.plane, "kind": d["kind"], "names": list(d["inputs"]), "margin": PL["margin"],
            "random": d.get("random")}


rule plane_basis:
    input:
        code=lib("flat", "models", "curves", "planes"),
        points=lambda wc: list(plane_def(wc)["inputs"].values()),
        spec=lambda wc: plane_def(wc)["spec"],
    output:
        plane=f"{RES}/{{dataset}}/{{model}}/planes/{{plane}}/plane.pt",
        points=f"{RES}/{{dataset}}/{{model}}/planes/{{plane}}/points.parquet",
    params:
        plane=plane_params,
    log:
        "logs/{dataset}/{model}/planes/{plane}/basis.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plane_basis.py"


def tile_params(wildcards):
    exp = experiment(wildcards)
    d = plane_def(wildcards)
    return {"resolution": d["resolution"], "tiles_per_side": d["tiles"], "engine": PL["engine"],
            "dataset": exp["dataset"], "evaluation": config["evaluation"]}


rule plane_tile:
    input:
        code=lib("data", "models", "flat", "planes"),
        plane=rules.plane_basis.output.plane,
        spec=lambda wc: plane_def(wc)["spec"],
    output:
        tile=f"{RES}/{{dataset}}/{{model}}/planes/{{plane}}/tiles/tile{{i}}_{{j}}.parquet",
    params:
        grid=tile_params,
    log:
        "logs/{dataset}/{model}/planes/{plane}/tile{i}_{j}.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=config["compute"]["memory_budget_mb"] + 2000),
    script:
        "../scripts/plane_tile.py"


def plane_tiles(wildcards):
    return tile_paths(plane_dir(wildcards.plane, wildcards.dataset, wildcards.model), plane_def(wildcards)["tiles"])


rule plane_gather:
    input:
        code=lib(),
        tiles=plane_tiles,
    output:
        grid=f"{RES}/{{dataset}}/{{model}}/planes/{{plane}}/grid.parquet",
    params:
        resolution=lambda wc: plane_def(wc)["resolution"],
    log:
        "logs/{dataset}/{model}/planes/{plane}/gather.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plane_gather.py"


rule curve_track:
    input:
        code=lib("curves", "planes"),
        plane=rules.plane_basis.output.plane,
        curve=lambda wc: plane_def(wc)["inputs"]["curve"],
        epochs=lambda wc: plane_def(wc)["epochs"],
    output:
        track=f"{RES}/{{dataset}}/{{model}}/planes/{{plane}}/track.parquet",
    params:
        t_marks=PL["render"]["t_marks"],
    log:
        "logs/{dataset}/{model}/planes/{plane}/track.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plane_curve_track.py"


def plot_inputs(wildcards):
    d = plane_dir(wildcards.plane, wildcards.dataset, wildcards.model)
    ins = {"grid": f"{d}/grid.parquet", "points": f"{d}/points.parquet"}
    if plane_def(wildcards)["kind"] == "curve":
        ins["track"] = f"{d}/track.parquet"
    return ins


rule plot_plane:
    input:
        unpack(plot_inputs),
        code=lib("figures", "plane_render"),
    output:
        png=report(f"{RES}/{{dataset}}/{{model}}/figures/planes/{{plane}}.png", caption="../report/plane.rst", category="Loss planes",
                   labels={"dataset": "{dataset}", "model": "{model}", "plane": "{plane}"}),
        pdf=f"{RES}/{{dataset}}/{{model}}/figures/planes/{{plane}}.pdf",
    params:
        render={k: PL["render"][k] for k in ("levels", "t_marks")},
    log:
        "logs/{dataset}/{model}/figures/planes/{plane}.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_plane.py"


HAVE_FFMPEG = shutil.which("ffmpeg") is not None


def animation_outputs():
    out = {"gif": report(f"{RES}/{{dataset}}/{{model}}/figures/planes/{{plane}}-training.gif",
                         caption="../report/plane_animation.rst", category="Loss planes",
                         labels={"dataset": "{dataset}", "model": "{model}", "plane": "{plane} (training)"})}
    if HAVE_FFMPEG:
        out["mp4"] = f"{RES}/{{dataset}}/{{model}}/figures/planes/{{plane}}-training.mp4"
    return out


rule animate_curve_training:
    input:
        code=lib("figures", "plane_render"),
        grid=rules.plane_gather.output.grid,
        points=rules.plane_basis.output.points,
        track=rules.curve_track.output.track,
    output:
        **animation_outputs(),
    params:
        render={k: PL["render"][k] for k in ("levels", "fps")},
    log:
        "logs/{dataset}/{model}/figures/planes/{plane}-training.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/animate_curve_training.py"


wildcard_constraints:
    plane="[A-Za-z0-9_.+-]+",
    i="[0-9]+",
    j="[0-9]+",
