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

ALIGN = config["align"]
_INS = ALIGN["instability"]


def al(wc):
    return AL.stage(PLAN, wc.dataset, wc.model)


def pair(wc):
    return al(wc)["pairs"][wc.pair]


def aligned_inputs(wc):
    return {"w1": pair(wc)["w1"], "w2": pair(wc)["w2"], "aligned": list(pair(wc)["aligned"].values())}


rule align_pair:
    input:
        code=lib("job", "align"),
        w1=lambda wc: pair(wc)["w1"],
        w2=lambda wc: pair(wc)["w2"],
    output:
        aligned=out(AL.OUT["aligned"]),
    params:
        spec=lambda wc: experiment_spec(wc, pair(wc)["setting"]),
        align={k: ALIGN[k] for k in ("seed", "max_iter")},
    log:
        "logs/{dataset}/{model}/align/{pair}/{method}.log",
    benchmark:
        "logs/benchmarks/align_pair/{dataset}/{model}/align/{pair}/{method}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/align_pair.py"


rule align_lines:
    input:
        unpack(aligned_inputs),
        code=lib("job", "align"),
    output:
        lines=out(AL.OUT["lines"]),
        barriers=out(AL.OUT["barriers"]),
    params:
        spec=lambda wc: experiment_spec(wc, pair(wc)["setting"]),
        ids=lambda wc: {k: pair(wc)[k] for k in ("setting", "seed_a", "seed_b")},
        lines={k: ALIGN[k] for k in ("methods", "repair", "points")},
    log:
        "logs/{dataset}/{model}/align/{pair}/lines.log",
    benchmark:
        "logs/benchmarks/align_lines/{dataset}/{model}/align/{pair}/lines.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/align_lines.py"


def line_figure_inputs(wc):
    from losslab.plan import curves as CV

    pairs = al(wc)["pairs"]
    ins = {"lines": [PLAN.path(AL.OUT["lines"], dataset=wc.dataset, model=wc.model, pair=p) for p in sorted(pairs)]}
    ins["along"] = [PLAN.path(CV.OUT["along"], dataset=wc.dataset, model=wc.model, curve=c["id"])
                    for c in CV.experiment_curves(PLAN, wc.dataset, wc.model)
                    if f"{c['setting']}/seed{c['a']}-seed{c['b']}" in pairs]
    return ins


rule plot_align_lines:
    input:
        unpack(line_figure_inputs),
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
    script:
        "../scripts/plot_align_lines.py"


rule align_width:
    input:
        code=lib("job", "align"),
        ckpts=lambda wc: list(al(wc)["widths"][wc.setting]["ckpts"].values()),
    output:
        barriers=out(AL.OUT["width"]),
    params:
        spec=lambda wc: experiment_spec(wc, wc.setting),
        width=lambda wc: {"width": al(wc)["widths"][wc.setting]["width"], "pairs": al(wc)["widths"][wc.setting]["pairs"],
                          "seeds": list(al(wc)["widths"][wc.setting]["ckpts"]), "method": ALIGN["width"]["method"]},
        lines={k: ALIGN[k] for k in ("repair", "points", "seed", "max_iter")},
    log:
        "logs/{dataset}/{model}/align/width/{setting}.log",
    benchmark:
        "logs/benchmarks/align_width/{dataset}/{model}/align/width/{setting}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/align_width.py"


rule align_width_summary:
    input:
        code=lib(),
        tables=lambda wc: [PLAN.path(AL.OUT["width"], dataset=wc.dataset, model=wc.model, setting=s)
                           for s in sorted(al(wc)["widths"])],
    output:
        table=out(AL.OUT["width_all"]),
    log:
        "logs/{dataset}/{model}/align/width_summary.log",
    benchmark:
        "logs/benchmarks/align_width_summary/{dataset}/{model}/align/width_summary.tsv"
    resources:
        **cpu_resources(),
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
    script:
        "../scripts/plot_align_width.py"


def instability(wc):
    return al(wc)["instability"]


rule spawn_states:
    input:
        code=lib("data", "models", "flat", "train"),
    output:
        states=[out(AL.OUT["state"], k=f"{k:04d}") for k in sorted(_INS["epochs"])],
    params:
        spec=lambda wc: PLAN.endpoint_params(wc.dataset, wc.model, instability(wc)["setting"]),
        seed=lambda wc: instability(wc)["seed"],
        ks=sorted(_INS["epochs"]),
    log:
        "logs/{dataset}/{model}/instability/{spawn}/states.log",
    benchmark:
        "logs/benchmarks/spawn_states/{dataset}/{model}/instability/{spawn}/states.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=8000),
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
        spec=lambda wc: PLAN.endpoint_params(wc.dataset, wc.model, instability(wc)["setting"]),
        seed=lambda wc: instability(wc)["seed"],
        points=ALIGN["points"],
    log:
        "logs/{dataset}/{model}/instability/{spawn}/k{k}.log",
    benchmark:
        "logs/benchmarks/instability_k/{dataset}/{model}/instability/{spawn}/k{k}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=8000),
    script:
        "../scripts/instability_k.py"


rule instability_summary:
    input:
        code=lib("summaries"),
        tables=lambda wc: [PLAN.path(AL.OUT["copy_line"], dataset=wc.dataset, model=wc.model, spawn=instability(wc)["spawn"],
                                     k=f"{k:04d}") for k in instability(wc)["ks"]],
    output:
        table=out(AL.OUT["instability"]),
    log:
        "logs/{dataset}/{model}/instability/summary.log",
    benchmark:
        "logs/benchmarks/instability_summary/{dataset}/{model}/instability/summary.tsv"
    resources:
        **cpu_resources(),
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
    script:
        "../scripts/plot_instability.py"
