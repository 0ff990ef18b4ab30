# Stage: connectors, m-connectors and short directions on real networks (Fort & Jastrzebski,
# sections 4.2-4.3). Library: src/losslab/connectors.py (algorithms over any loss on flat
# vectors) + src/losslab/hessian.py (Lanczos short-direction counts). Optima are endpoint
# checkpoints; the plan (src/losslab/plan/connectors.py) names them and checks the subspace
# dimension against the network's parameter count.
from losslab.plan import connectors as CN

CON = config["connectors"]


def con(wc):
    return CN.stage(PLAN, wc.dataset, wc.model)


def con_dataset(wc):
    return PLAN.experiment(wc.dataset, wc.model).dataset_cfg


rule connector:
    input:
        code=lib("data", "models", "flat", "connectors"),
        optima=lambda wc: con(wc)["optima"],
    output:
        nodes=out(CN.OUT["nodes"]),
        table=out(CN.OUT["table"]),
    params:
        dataset=con_dataset,
        opt=lambda wc: con(wc)["opt"],
        segments=CON["segments"],
    log:
        "logs/{dataset}/{model}/connectors/{connector}/connector.log",
    benchmark:
        "logs/benchmarks/connector/{dataset}/{model}/connectors/{connector}/connector.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/connector.py"


rule connector_path:
    input:
        code=lib("data", "models", "flat", "connectors"),
        nodes=rules.connector.output.nodes,
        optima=lambda wc: con(wc)["optima"],
    output:
        path=out(CN.OUT["path"]),
        cosines=out(CN.OUT["cosines"]),
    params:
        dataset=con_dataset,
        evaluation=config["evaluation"],
        eval_points=CON["eval_points"],
    log:
        "logs/{dataset}/{model}/connectors/{connector}/path.log",
    benchmark:
        "logs/benchmarks/connector_path/{dataset}/{model}/connectors/{connector}/path.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/connector_path.py"


rule connector_short_directions:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        nodes=rules.connector.output.nodes,
        optima=lambda wc: con(wc)["optima"],
    output:
        table=out(CN.OUT["short"]),
    params:
        dataset=con_dataset,
        evaluation=config["evaluation"],
        short=CON["short_directions"],
    log:
        "logs/{dataset}/{model}/connectors/{connector}/short_directions.log",
    benchmark:
        "logs/benchmarks/connector_short_directions/{dataset}/{model}/connectors/{connector}/short_directions.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/connector_short.py"


rule mconnector:
    input:
        code=lib("data", "models", "flat", "connectors"),
        optima=lambda wc: con(wc)["m_optima"],
    output:
        nodes=out(CN.OUT["m_nodes"]),
        table=out(CN.OUT["m_table"]),
    params:
        dataset=con_dataset,
        opt=lambda wc: con(wc)["opt"],
        resolution=CON["mconnector"]["resolution"],
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/triangle.log",
    benchmark:
        "logs/benchmarks/mconnector/{dataset}/{model}/mconnectors/{mconnector}/triangle.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/mconnector.py"


rule mconnector_surface:
    input:
        code=lib("data", "models", "flat", "connectors"),
        nodes=rules.mconnector.output.nodes,
        optima=lambda wc: con(wc)["m_optima"],
    output:
        table=out(CN.OUT["m_surface"]),
    params:
        dataset=con_dataset,
        evaluation=config["evaluation"],
        eval_resolution=CON["mconnector"]["eval_resolution"],
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/surface.log",
    benchmark:
        "logs/benchmarks/mconnector_surface/{dataset}/{model}/mconnectors/{mconnector}/surface.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/mconnector_surface.py"


rule mconnector_centre:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        optima=lambda wc: con(wc)["centre_optima"],
    output:
        table=out(CN.OUT["centre"]),
    params:
        dataset=con_dataset,
        evaluation=config["evaluation"],
        opt=lambda wc: con(wc)["opt"],
        short=CON["short_directions"],
        centre_n=CON["mconnector"]["centre_n"],
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/centre.log",
    benchmark:
        "logs/benchmarks/mconnector_centre/{dataset}/{model}/mconnectors/{mconnector}/centre.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/mconnector_centre.py"


def connector_tables(wc):
    s = con(wc)
    ids = dict(dataset=wc.dataset, model=wc.model)
    return {"path": PLAN.path(CN.OUT["path"], connector=s["connector"], **ids),
            "cosines": PLAN.path(CN.OUT["cosines"], connector=s["connector"], **ids),
            "short": PLAN.path(CN.OUT["short"], connector=s["connector"], **ids),
            "surface": PLAN.path(CN.OUT["m_surface"], mconnector=s["mconnector"], **ids),
            "centre": PLAN.path(CN.OUT["centre"], mconnector=s["centre"], **ids)}


def _fig(name, caption):
    return report(out(CN.OUT["fig"], name=name, ext="png"), caption=f"../../src/losslab/figures/captions/{caption}.rst", category="Connectors")


rule plot_connectors:
    input:
        unpack(connector_tables),
        code=lib("figures.structure"),
    output:
        connector_path=_fig("connector_path", "connector_path"),
        connector_cosines=_fig("connector_cosines", "connector_cosines"),
        connector_agreement=_fig("connector_agreement", "connector_agreement"),
        connector_short_directions=_fig("connector_short_directions", "connector_short"),
        mconnector_triangle=_fig("mconnector_triangle", "mconnector_triangle"),
        mconnector_centre=_fig("mconnector_centre", "mconnector_centre"),
        pdfs=[out(CN.OUT["fig"], name=n, ext="pdf") for n in CN.FIGURES],
    log:
        "logs/{dataset}/{model}/figures/connectors.log",
    benchmark:
        "logs/benchmarks/plot_connectors/{dataset}/{model}/figures/connectors.tsv"
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_connectors.py"
