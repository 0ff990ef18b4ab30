# Stage: SWA against snapshot ensembles over learning rates (paper section 4.5, Figure 6).
# Library: src/losslab/swa.py. From the trained endpoint `swa.start_setting` / seed, training
# continues with each learning rate in `swa.lrs` and each schedule in `swa.schedules`, one
# snapshot every `swa.snapshot_every` epochs. One job per endpoint seed runs all of that seed's
# (schedule, lr) runs (the plan, src/losslab/plan/swa.py), one start-up for all of them:
# results/{dataset}/{model}/swa/{schedule}/lr{lr}/seed{seed}/{snapshots.pt,points,lines,summary}.
from losslab.plan import swa as SW


rule swa_run:
    input:
        code=lib("job", "data", "models", "flat", "train", "swa"),
        start=lambda wc: SW.seed_runs(PLAN, wc)[0]["start"],
    output:
        snapshots=[out(t) for t in SW.run_outputs(PLAN, "snapshots")],
        points=[out(t) for t in SW.run_outputs(PLAN, "points")],
        lines=[out(t) for t in SW.run_outputs(PLAN, "lines")],
        summary=[out(t) for t in SW.run_outputs(PLAN, "summary")],
    params:
        swa=xcfg("swa", pick=SW.SWA_KEYS + ("start_setting",)),
        runs=lambda wc: [{k: r[k] for k in ("id", "schedule", "lr")} for r in SW.seed_runs(PLAN, wc)],
        spec=lambda wc: PLAN.experiment_spec(wc.dataset, wc.model, PLAN.config_of(wc.dataset, wc.model)["swa"]["start_setting"]),
    log:
        "logs/{dataset}/{model}/swa/seed{seed}.log",
    benchmark:
        "logs/benchmarks/swa_run/{dataset}/{model}/swa/seed{seed}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/swa_run.py"


rule swa_summary:
    input:
        unpack(lambda wc: SW.tables(PLAN, wc)),
        code=lib("swa"),
    output:
        summary=out(SW.OUT["all_summary"]),
        lines=out(SW.OUT["all_lines"]),
    log:
        "logs/{dataset}/{model}/swa/summary.log",
    benchmark:
        "logs/benchmarks/swa_summary/{dataset}/{model}/swa/summary.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/swa_summary.py"


rule plot_swa:
    input:
        code=lib("figures.sweeps"),
        summary=rules.swa_summary.output.summary,
        lines=rules.swa_summary.output.lines,
    output:
        swa_accuracy=report(out(SW.OUT["fig"], name="swa_accuracy", ext="png"), caption="../../src/losslab/figures/captions/swa_accuracy.rst",
                            category="SWA"),
        swa_lines=report(out(SW.OUT["fig"], name="swa_lines", ext="png"), caption="../../src/losslab/figures/captions/swa_lines.rst",
                         category="SWA"),
        pdfs=[out(SW.OUT["fig"], name=n, ext="pdf") for n in SW.FIGURES],
    log:
        "logs/{dataset}/{model}/figures/swa.log",
    benchmark:
        "logs/benchmarks/plot_swa/{dataset}/{model}/figures/swa.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_swa.py"
