# Stage: permutation alignment and linear mode connectivity (Git Re-Basin, REPAIR; Frankle et al.'s
# instability). Library: src/losslab/align.py (permutation specs from the model's graph, weight
# and activation matching, REPAIR, lines) and src/losslab/train.py (spawning from a saved epoch).
# The plan (src/losslab/plan/align.py) lists the pairs, the width sweep and the spawn epochs;
# curves between aligned endpoints are planned with the curves stage.
#   {results}/{dataset}/{model}/align/{setting}/seed{a}-seed{b}/{method}.pt   aligned copy of b
#   .../align/{setting}/seed{a}-seed{b}/lines.parquet, barriers.parquet           naive / aligned / +REPAIR
#   .../align/width/{setting}/barriers.parquet, align/width.parquet                barrier against width
#   .../instability/{setting}/seed{s}/states/epoch{k}.pt, k{k}/copy{c}.pt, k{k}/line.parquet
from losslab.plan import align as AL

_INS = config["align"]["instability"]  # its epochs shape the outputs: shared by every experiment


rule align_pair:
    input:
        code=lib("job", "align"),
        w1=lambda wc: AL.pair_of(PLAN, wc)["w1"],
        w2=lambda wc: AL.pair_of(PLAN, wc)["w2"],
    output:
        aligned=out(AL.OUT["aligned"]),
    params:
        spec=lambda wc: PLAN.experiment_spec(wc.dataset, wc.model, AL.pair_of(PLAN, wc)["setting"]),
        align=xcfg("align", pick=("seed", "max_iter")),
    log:
        "logs/{dataset}/{model}/align/{pair}/{method}.log",
    benchmark:
        "logs/benchmarks/align_pair/{dataset}/{model}/align/{pair}/{method}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/align_pair.py"


rule align_lines:
    input:
        unpack(lambda wc: AL.line_inputs(PLAN, wc)),
        code=lib("job", "align"),
    output:
        lines=out(AL.OUT["lines"]),
        barriers=out(AL.OUT["barriers"]),
    params:
        spec=lambda wc: PLAN.experiment_spec(wc.dataset, wc.model, AL.pair_of(PLAN, wc)["setting"]),
        ids=lambda wc: {k: AL.pair_of(PLAN, wc)[k] for k in ("setting", "seed_a", "seed_b")},
        lines=xcfg("align", pick=("methods", "repair", "points")),
    log:
        "logs/{dataset}/{model}/align/{pair}/lines.log",
    benchmark:
        "logs/benchmarks/align_lines/{dataset}/{model}/align/{pair}/lines.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/align_lines.py"


rule plot_align_lines:
    input:
        unpack(lambda wc: AL.line_figure_inputs(PLAN, wc)),
        code=lib("figures.align"),
    output:
        png=report(out(AL.OUT["fig"], name="lines", ext="png"), caption="../../src/losslab/figures/captions/align_lines.rst",
                   category="Alignment"),
        pdf=out(AL.OUT["fig"], name="lines", ext="pdf"),
    log:
        "logs/{dataset}/{model}/figures/align_lines.log",
    benchmark:
        "logs/benchmarks/plot_align_lines/{dataset}/{model}/figures/align_lines.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_align_lines.py"


rule align_width:
    input:
        code=lib("job", "align"),
        ckpts=lambda wc: list(AL.stage(PLAN, wc.dataset, wc.model)["widths"][wc.setting]["ckpts"].values()),
    output:
        barriers=out(AL.OUT["width"]),
    params:
        spec=lambda wc: PLAN.experiment_spec(wc.dataset, wc.model, wc.setting),
        width=lambda wc: {"width": AL.stage(PLAN, wc.dataset, wc.model)["widths"][wc.setting]["width"], "pairs": AL.stage(PLAN, wc.dataset, wc.model)["widths"][wc.setting]["pairs"],
                          "seeds": list(AL.stage(PLAN, wc.dataset, wc.model)["widths"][wc.setting]["ckpts"]), "method": PLAN.config_of(wc.dataset, wc.model)["align"]["width"]["method"]},
        lines=xcfg("align", pick=("repair", "points", "seed", "max_iter")),
    log:
        "logs/{dataset}/{model}/align/width/{setting}.log",
    benchmark:
        "logs/benchmarks/align_width/{dataset}/{model}/align/width/{setting}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/align_width.py"


rule align_width_summary:
    input:
        code=lib(),
        tables=lambda wc: [PLAN.path(AL.OUT["width"], dataset=wc.dataset, model=wc.model, setting=s)
                           for s in sorted(AL.stage(PLAN, wc.dataset, wc.model)["widths"])],
    output:
        table=out(AL.OUT["width_all"]),
    log:
        "logs/{dataset}/{model}/align/width_summary.log",
    benchmark:
        "logs/benchmarks/align_width_summary/{dataset}/{model}/align/width_summary.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/gather_tables.py"


rule plot_align_width:
    input:
        code=lib("figures.align"),
        table=rules.align_width_summary.output.table,
    output:
        png=report(out(AL.OUT["fig"], name="width", ext="png"), caption="../../src/losslab/figures/captions/align_width.rst",
                   category="Alignment"),
        pdf=out(AL.OUT["fig"], name="width", ext="pdf"),
    log:
        "logs/{dataset}/{model}/figures/align_width.log",
    benchmark:
        "logs/benchmarks/plot_align_width/{dataset}/{model}/figures/align_width.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_align_width.py"


rule spawn_states:
    input:
        code=lib("data", "models", "flat", "train"),
    output:
        states=[out(AL.OUT["state"], k=f"{k:04d}") for k in sorted(_INS["epochs"])],
    params:
        spec=lambda wc: PLAN.endpoint_params(wc.dataset, wc.model, AL.instability_of(PLAN, wc)["setting"]),
        seed=lambda wc: AL.instability_of(PLAN, wc)["seed"],
        ks=sorted(_INS["epochs"]),
    log:
        "logs/{dataset}/{model}/instability/{spawn}/states.log",
    benchmark:
        "logs/benchmarks/spawn_states/{dataset}/{model}/instability/{spawn}/states.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=8000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/spawn_states.py"


rule instability_k:
    input:
        code=lib("data", "models", "flat", "train", "align"),
        state=out(AL.OUT["state"]),
    output:
        copies=[out(AL.OUT["copy"], c=c) for c in (0, 1)],
        line=out(AL.OUT["copy_line"]),
    params:
        spec=lambda wc: PLAN.endpoint_params(wc.dataset, wc.model, AL.instability_of(PLAN, wc)["setting"]),
        seed=lambda wc: AL.instability_of(PLAN, wc)["seed"],
        points=xcfg("align", "points"),
    log:
        "logs/{dataset}/{model}/instability/{spawn}/k{k}.log",
    benchmark:
        "logs/benchmarks/instability_k/{dataset}/{model}/instability/{spawn}/k{k}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=8000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/instability_k.py"


rule instability_summary:
    input:
        code=lib("summaries"),
        tables=lambda wc: [PLAN.path(AL.OUT["copy_line"], dataset=wc.dataset, model=wc.model, spawn=AL.instability_of(PLAN, wc)["spawn"],
                                     k=f"{k:04d}") for k in AL.instability_of(PLAN, wc)["ks"]],
    output:
        table=out(AL.OUT["instability"]),
    log:
        "logs/{dataset}/{model}/instability/summary.log",
    benchmark:
        "logs/benchmarks/instability_summary/{dataset}/{model}/instability/summary.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/instability_summary.py"


rule plot_instability:
    input:
        code=lib("figures.align"),
        table=rules.instability_summary.output.table,
    output:
        png=report(out(AL.OUT["fig"], name="instability", ext="png"),
                   caption="../../src/losslab/figures/captions/instability.rst", category="Alignment"),
        pdf=out(AL.OUT["fig"], name="instability", ext="pdf"),
    log:
        "logs/{dataset}/{model}/figures/instability.log",
    benchmark:
        "logs/benchmarks/plot_instability/{dataset}/{model}/figures/instability.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_instability.py"
