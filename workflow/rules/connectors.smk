# Stage: connectors, m-connectors and short directions on real networks (Fort & Jastrzebski,
# sections 4.2-4.3). Library: src/losslab/connectors.py (algorithms over any loss on flat
# vectors) + src/losslab/hessian.py (converged Lanczos short-direction counts). Optima are endpoint
# checkpoints; the plan (src/losslab/plan/connectors.py) names them and checks the subspace
# dimension against the network's parameter count.
from losslab.plan import connectors as CN


rule connector:
    input:
        code=lib("data", "models", "flat", "connectors"),
        optima=lambda wc: CN.optima(PLAN, wc),
    output:
        nodes=out(CN.OUT["nodes"]),
        table=out(CN.OUT["table"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        opt=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["opt"],
        segments=xcfg("connectors", "segments"),
        variant=xcfg("connectors", "variant"),
    log:
        "logs/{dataset}/{model}/connectors/{connector}/connector.log",
    benchmark:
        "logs/benchmarks/connector/{dataset}/{model}/connectors/{connector}/connector.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/connector.py"


rule connector_path:
    input:
        code=lib("data", "models", "flat", "connectors"),
        nodes=rules.connector.output.nodes,
        optima=lambda wc: CN.optima(PLAN, wc),
    output:
        path=out(CN.OUT["path"]),
        cosines=out(CN.OUT["cosines"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        evaluation=xcfg("evaluation"),
        eval_points=xcfg("connectors", "eval_points"),
    log:
        "logs/{dataset}/{model}/connectors/{connector}/path.log",
    benchmark:
        "logs/benchmarks/connector_path/{dataset}/{model}/connectors/{connector}/path.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/connector_path.py"


rule connector_short_directions:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        nodes=rules.connector.output.nodes,
        optima=lambda wc: CN.optima(PLAN, wc),
    output:
        table=out(CN.OUT["short"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        evaluation=xcfg("evaluation"),
        short=xcfg("connectors", "short_directions"),
    log:
        "logs/{dataset}/{model}/connectors/{connector}/short_directions.log",
    benchmark:
        "logs/benchmarks/connector_short_directions/{dataset}/{model}/connectors/{connector}/short_directions.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/connector_short.py"


rule mconnector:
    input:
        code=lib("data", "models", "flat", "connectors"),
        optima=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["m_optima"],
    output:
        nodes=out(CN.OUT["m_nodes"]),
        table=out(CN.OUT["m_table"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        opt=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["opt"],
        resolution=xcfg("connectors", "mconnector", "resolution"),
        variant=xcfg("connectors", "variant"),
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/triangle.log",
    benchmark:
        "logs/benchmarks/mconnector/{dataset}/{model}/mconnectors/{mconnector}/triangle.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/mconnector.py"


rule mconnector_surface:
    input:
        code=lib("data", "models", "flat", "connectors"),
        nodes=rules.mconnector.output.nodes,
        optima=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["m_optima"],
    output:
        table=out(CN.OUT["m_surface"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        evaluation=xcfg("evaluation"),
        eval_resolution=xcfg("connectors", "mconnector", "eval_resolution"),
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/surface.log",
    benchmark:
        "logs/benchmarks/mconnector_surface/{dataset}/{model}/mconnectors/{mconnector}/surface.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/mconnector_surface.py"


rule mconnector_centre:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        optima=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["centre_optima"],
    output:
        table=out(CN.OUT["centre"]),
        centres=out(CN.OUT["centres"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        evaluation=xcfg("evaluation"),
        opt=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["opt"],
        short=xcfg("connectors", "short_directions"),
        centre_n=xcfg("connectors", "mconnector", "centre_n"),
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/centre.log",
    benchmark:
        "logs/benchmarks/mconnector_centre/{dataset}/{model}/mconnectors/{mconnector}/centre.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/mconnector_centre.py"


rule connector_matched_control:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        nodes=rules.connector.output.nodes,
        optima=lambda wc: CN.optima(PLAN, wc),
    output:
        table=out(CN.OUT["short_matched"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        evaluation=xcfg("evaluation"),
        short=xcfg("connectors", "short_directions"),
    log:
        "logs/{dataset}/{model}/connectors/{connector}/short_matched.log",
    benchmark:
        "logs/benchmarks/connector_matched_control/{dataset}/{model}/connectors/{connector}/short_matched.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/connector_matched.py"


rule mconnector_matched_control:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        centres=rules.mconnector_centre.output.centres,
        optima=lambda wc: CN.stage(PLAN, wc.dataset, wc.model)["centre_optima"],
    output:
        table=out(CN.OUT["centre_matched"]),
    params:
        dataset=lambda wc: PLAN.experiment(wc.dataset, wc.model).dataset_cfg,
        evaluation=xcfg("evaluation"),
        short=xcfg("connectors", "short_directions"),
    log:
        "logs/{dataset}/{model}/mconnectors/{mconnector}/centre_matched.log",
    benchmark:
        "logs/benchmarks/mconnector_matched_control/{dataset}/{model}/mconnectors/{mconnector}/centre_matched.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/mconnector_matched.py"


rule plot_connectors:
    input:
        unpack(lambda wc: CN.figure_inputs(PLAN, wc)),
        code=lib("figures.structure"),
    output:
        connector_path=report(out(CN.OUT["fig"], name="connector_path", ext="png"),
                                   caption="../../src/losslab/figures/captions/connector_path.rst", category="Connectors"),
        connector_cosines=report(out(CN.OUT["fig"], name="connector_cosines", ext="png"),
                                   caption="../../src/losslab/figures/captions/connector_cosines.rst", category="Connectors"),
        connector_agreement=report(out(CN.OUT["fig"], name="connector_agreement", ext="png"),
                                   caption="../../src/losslab/figures/captions/connector_agreement.rst", category="Connectors"),
        connector_short_directions=report(out(CN.OUT["fig"], name="connector_short_directions", ext="png"),
                                   caption="../../src/losslab/figures/captions/connector_short.rst", category="Connectors"),
        mconnector_triangle=report(out(CN.OUT["fig"], name="mconnector_triangle", ext="png"),
                                   caption="../../src/losslab/figures/captions/mconnector_triangle.rst", category="Connectors"),
        mconnector_centre=report(out(CN.OUT["fig"], name="mconnector_centre", ext="png"),
                                   caption="../../src/losslab/figures/captions/mconnector_centre.rst", category="Connectors"),
        pdfs=[out(CN.OUT["fig"], name=n, ext="pdf") for n in CN.FIGURES],
    log:
        "logs/{dataset}/{model}/figures/connectors.log",
    benchmark:
        "logs/benchmarks/plot_connectors/{dataset}/{model}/figures/connectors.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_connectors.py"
