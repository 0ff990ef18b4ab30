# Stage: fast ensembling at equal cost. Library: src/losslab/ensembles.py (evaluation, diversity),
# src/losslab/fge.py (FGE), src/losslab/swa.py (snapshots, SWA), src/losslab/curves.py and
# src/losslab/connectors.py (points along a curve, inside an m-connector). One rule per method,
# one gather, one figure pair; every table has budget_epochs (the endpoints' own epochs included).
#   {results}/{dataset}/{model}/ensembles/{independent,simplex}.parquet, fge/seed{s}.parquet,
#   snapshots/seed{s}.parquet, curve/{curve}.parquet, summary.parquet
from losslab.plan import ensembles as EN



rule ensemble_independent:
    input:
        code=lib("job", "ensembles"),
        ckpts=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["independent"],
    output:
        table=out(EN.OUT["independent"]),
    params:
        spec=lambda wc: EN.spec(PLAN, wc),
        seeds=xcfg("ensembles", "seeds"),
        max_subsets=xcfg("ensembles", "max_subsets"),
        epochs=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["epochs"],
    log:
        "logs/{dataset}/{model}/ensembles/independent.log",
    benchmark:
        "logs/benchmarks/ensemble_independent/{dataset}/{model}/ensembles/independent.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/ensemble_independent.py"


rule ensemble_fge:
    input:
        code=lib("job", "ensembles", "fge"),
        start=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["starts"][int(wc.seed)],
    output:
        table=out(EN.OUT["fge"]),
        members=out(EN.OUT["fge_members"]),
    params:
        spec=lambda wc: EN.spec(PLAN, wc),
        fge=xcfg("ensembles", "fge"),
        epochs=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["epochs"],
    log:
        "logs/{dataset}/{model}/ensembles/fge/seed{seed}.log",
    benchmark:
        "logs/benchmarks/ensemble_fge/{dataset}/{model}/ensembles/fge/seed{seed}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/ensemble_fge.py"


rule ensemble_snapshots:
    input:
        code=lib("job", "ensembles", "swa"),
        start=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["starts"][int(wc.seed)],
    output:
        table=out(EN.OUT["snapshots"]),
        members=out(EN.OUT["snapshot_members"]),
    params:
        spec=lambda wc: EN.spec(PLAN, wc),
        snapshots=xcfg("ensembles", "snapshots"),
        epochs=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["epochs"],
    log:
        "logs/{dataset}/{model}/ensembles/snapshots/seed{seed}.log",
    benchmark:
        "logs/benchmarks/ensemble_snapshots/{dataset}/{model}/ensembles/snapshots/seed{seed}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/ensemble_snapshots.py"


rule ensemble_curve:
    input:
        code=lib("job", "ensembles", "curves"),
        ckpt=lambda wc: EN.curve_of(PLAN, wc)["ckpt"],
    output:
        table=out(EN.OUT["curve"]),
    params:
        spec=lambda wc: EN.spec(PLAN, wc),
        members=xcfg("ensembles", "curve", "members"),
        budget=lambda wc: 2 * EN.stage(PLAN, wc.dataset, wc.model)["epochs"] + EN.curve_of(PLAN, wc)["epochs"],
    log:
        "logs/{dataset}/{model}/ensembles/curve/{curve}.log",
    benchmark:
        "logs/benchmarks/ensemble_curve/{dataset}/{model}/ensembles/curve/{curve}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/ensemble_curve.py"


rule ensemble_simplex:
    input:
        code=lib("job", "ensembles", "connectors"),
        nodes=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["simplex"]["nodes"],
        optima=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["simplex"]["optima"],
    output:
        table=out(EN.OUT["simplex"]),
    params:
        spec=lambda wc: EN.spec(PLAN, wc),
        simplex=xcfg("ensembles", "simplex"),
        budget=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["simplex"]["budget"],
    log:
        "logs/{dataset}/{model}/ensembles/simplex.log",
    benchmark:
        "logs/benchmarks/ensemble_simplex/{dataset}/{model}/ensembles/simplex.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/ensemble_simplex.py"


rule ensemble_summary:
    input:
        code=lib(),
        tables=lambda wc: EN.stage(PLAN, wc.dataset, wc.model)["tables"],
    output:
        table=out(EN.OUT["summary"]),
    log:
        "logs/{dataset}/{model}/ensembles/summary.log",
    benchmark:
        "logs/benchmarks/ensemble_summary/{dataset}/{model}/ensembles/summary.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/gather_tables.py"


rule plot_ensembles:
    input:
        code=lib("figures.ensembles"),
        table=rules.ensemble_summary.output.table,
    output:
        budget=report(out(EN.OUT["fig"], name="budget", ext="png"),
                      caption="../../src/losslab/figures/captions/ensembles_budget.rst", category="Ensembles"),
        diversity=report(out(EN.OUT["fig"], name="diversity", ext="png"),
                         caption="../../src/losslab/figures/captions/ensembles_diversity.rst", category="Ensembles"),
        pdfs=[out(EN.OUT["fig"], name=n, ext="pdf") for n in ("budget", "diversity")],
    log:
        "logs/{dataset}/{model}/figures/ensembles.log",
    benchmark:
        "logs/benchmarks/plot_ensembles/{dataset}/{model}/figures/ensembles.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_ensembles.py"
