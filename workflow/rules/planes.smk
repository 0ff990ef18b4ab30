# Stage: loss planes. Library: src/losslab/planes.py (engine, bases, grids), src/losslab/figures/planes.py
# (figures, animation), src/losslab/figures/interactive.py (3-D HTML), src/losslab/export.py (ParaView). Scatter-gather per plane under results/{dataset}/{model}/planes/{plane}/:
#   plane_basis  -> plane.pt (origin, e1, e2, grid bounds) + points.parquet (defining points' x, y)
#   plane_tile   -> tiles/tile{i}_{j}.parquet, one GPU-tagged job per tile (tiles_per_side^2 jobs)
#   plane_gather -> grid.parquet (all G x G points, train and test)
#   plot_plane   -> figures/planes/{plane}.png/.pdf, .html (interactive 3-D), .vts/.vtp (ParaView);
#                   reads Parquet only
# Curve planes: curve_track projects every saved curve epoch on the final curve's plane
# (track.parquet); animate_curve_training draws one frame per epoch. The plan
# (src/losslab/plan/planes.py) lists every plane, including the tunnel stage's slices.
from losslab.plan import planes as PL_PLAN


rule plane_basis:
    input:
        code=lib("flat", "models", "curves", "planes"),
        points=lambda wc: list(PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["inputs"].values()),
        spec=lambda wc: PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["spec"],
    output:
        plane=out(PL_PLAN.OUT["plane"]),
        points=out(PL_PLAN.OUT["points"]),
    params:
        plane=lambda wc: {"name": wc.plane, "kind": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["kind"], "names": list(PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["inputs"]),
                          "margin": PLAN.config_of(wc.dataset, wc.model)["planes"]["margin"], "random": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["random"]},
    wildcard_constraints:
        plane=PL_PLAN.single_tile_constraint(PLAN, False),
    log:
        "logs/{dataset}/{model}/planes/{plane}/basis.log",
    benchmark:
        "logs/benchmarks/plane_basis/{dataset}/{model}/planes/{plane}/basis.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plane_basis.py"


rule plane_tile:
    input:
        code=lib("data", "models", "flat", "planes"),
        plane=rules.plane_basis.output.plane,
        spec=lambda wc: PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["spec"],
    output:
        tile=out(PL_PLAN.OUT["tile"]),
    params:
        grid=lambda wc: {"resolution": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["resolution"], "tiles_per_side": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["tiles"],
                         "engine": PLAN.config_of(wc.dataset, wc.model)["planes"]["engine"], "dataset": PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
                         "evaluation": PLAN.config_of(wc.dataset, wc.model)["evaluation"]},
    log:
        "logs/{dataset}/{model}/planes/{plane}/tile{i}_{j}.log",
    benchmark:
        "logs/benchmarks/plane_tile/{dataset}/{model}/planes/{plane}/tile{i}_{j}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=config["compute"]["memory_budget_mb"] + 2000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plane_tile.py"


rule plane_gather:
    input:
        code=lib("summaries"),
        tiles=lambda wc: PL_PLAN.tile_paths(PLAN, wc.dataset, wc.model, wc.plane),
    output:
        grid=out(PL_PLAN.OUT["grid"]),
    params:
        resolution=lambda wc: PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["resolution"],
    wildcard_constraints:
        plane=PL_PLAN.single_tile_constraint(PLAN, False),
    log:
        "logs/{dataset}/{model}/planes/{plane}/gather.log",
    benchmark:
        "logs/benchmarks/plane_gather/{dataset}/{model}/planes/{plane}/gather.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plane_gather.py"


rule plane_single:
    input:
        code=lib("data", "models", "flat", "planes", "summaries"),
        points=lambda wc: list(PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["inputs"].values()),
        spec=lambda wc: PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["spec"],
    output:
        plane=out(PL_PLAN.OUT["plane"]),
        points=out(PL_PLAN.OUT["points"]),
        grid=out(PL_PLAN.OUT["grid"]),
    params:
        plane=lambda wc: {"name": wc.plane, "kind": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["kind"],
                          "names": list(PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["inputs"]),
                          "margin": PLAN.config_of(wc.dataset, wc.model)["planes"]["margin"], "random": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["random"]},
        grid=lambda wc: {"resolution": PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["resolution"],
                         "tiles_per_side": 1, "engine": PLAN.config_of(wc.dataset, wc.model)["planes"]["engine"],
                         "dataset": PLAN.experiment(wc.dataset, wc.model).dataset_cfg, "evaluation": PLAN.config_of(wc.dataset, wc.model)["evaluation"]},
    wildcard_constraints:
        plane=PL_PLAN.single_tile_constraint(PLAN, True),
    log:
        "logs/{dataset}/{model}/planes/{plane}/single.log",
    benchmark:
        "logs/benchmarks/plane_single/{dataset}/{model}/planes/{plane}/single.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=config["compute"]["memory_budget_mb"] + 2000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plane_single.py"


rule curve_track:
    input:
        code=lib("curves", "planes"),
        plane=rules.plane_basis.output.plane,
        curve=lambda wc: PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["inputs"]["curve"],
        epochs=lambda wc: PL_PLAN.plane_def(PLAN, wc.dataset, wc.model, wc.plane)["epochs"],
    output:
        track=out(PL_PLAN.OUT["track"]),
    params:
        t_marks=xcfg("planes", "render", "t_marks"),
        max_frames=xcfg("planes", "render", "max_frames"),
    log:
        "logs/{dataset}/{model}/planes/{plane}/track.log",
    benchmark:
        "logs/benchmarks/curve_track/{dataset}/{model}/planes/{plane}/track.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plane_curve_track.py"


rule plot_plane:
    input:
        unpack(lambda wc: PL_PLAN.plot_inputs(PLAN, wc)),
        code=lib("figures.planes", "figures.interactive", "export"),
    output:
        png=report(out(PL_PLAN.OUT["png"]), caption="../../src/losslab/figures/captions/plane.rst", category="Loss planes",
                   labels={"dataset": "{dataset}", "model": "{model}", "plane": "{plane}"}),
        pdf=out(PL_PLAN.OUT["pdf"]),
        html=report(out(PL_PLAN.OUT["html"]), caption="../../src/losslab/figures/captions/plane_interactive.rst",
                    category="Loss planes", labels={"dataset": "{dataset}", "model": "{model}", "plane": "{plane} (3-D)"}),
        vts=out(PL_PLAN.OUT["vts"]),
        vtp=out(PL_PLAN.OUT["vtp"]),
    params:
        render=xcfg("planes", "render", pick=("levels", "t_marks")),
    log:
        "logs/{dataset}/{model}/figures/planes/{plane}.log",
    benchmark:
        "logs/benchmarks/plot_plane/{dataset}/{model}/figures/planes/{plane}.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_plane.py"


rule animate_curve_training:
    input:
        code=lib("figures.planes"),
        grid=rules.plane_gather.output.grid,
        points=rules.plane_basis.output.points,
        track=rules.curve_track.output.track,
    output:
        gif=report(out(PL_PLAN.OUT["gif"]), caption="../../src/losslab/figures/captions/plane_animation.rst",
                   category="Loss planes", labels={"dataset": "{dataset}", "model": "{model}", "plane": "{plane} (training)"}),
        **({"mp4": out(PL_PLAN.OUT["mp4"])} if PL_PLAN.have_ffmpeg() else {}),
    params:
        render=xcfg("planes", "render", pick=("levels", "fps")),
    log:
        "logs/{dataset}/{model}/figures/planes/{plane}-training.log",
    benchmark:
        "logs/benchmarks/animate_curve_training/{dataset}/{model}/figures/planes/{plane}-training.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/animate_curve_training.py"
