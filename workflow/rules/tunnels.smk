# Stage: hyper-parameter sweeps and radial tunnel width (paper section 4.4, Figure 5).
# Library: src/losslab/tunnels.py. The plan (src/losslab/plan/tunnels.py) turns every value of
# every list in `tunnels.sweep` into an endpoint setting <param>-<value> (a value equal to the
# base configuration reuses `default`), trained by the endpoint rule for each seed in
# `tunnels.seeds`, and registers one 2-D slice per setting with the planes stage. One tunnel job
# per setting probes all its seeds: results/{dataset}/{model}/tunnels/{setting}/{widths,profile}.parquet.
from losslab.plan import tunnels as TN



rule tunnel_widths:
    input:
        code=lib("job", "data", "models", "flat", "tunnels"),
        ckpts=lambda wc: TN.stage(PLAN, wc.dataset, wc.model)["ckpts"][wc.setting],
    output:
        widths=out(TN.OUT["widths"]),
        profile=out(TN.OUT["profile"]),
    params:
        tunnels=xcfg("tunnels", pick=TN.TUNNEL_KEYS),
        seeds=xcfg("tunnels", "seeds"),
        spec=lambda wc: PLAN.experiment_spec(wc.dataset, wc.model, wc.setting),
    log:
        "logs/{dataset}/{model}/tunnels/{setting}.log",
    benchmark:
        "logs/benchmarks/tunnel_widths/{dataset}/{model}/tunnels/{setting}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/tunnel_widths.py"


rule tunnel_summary:
    input:
        unpack(lambda wc: TN.tables(PLAN, wc)),
        code=lib("tunnels"),
    output:
        widths=out(TN.OUT["all_widths"]),
        profiles=out(TN.OUT["all_profiles"]),
        summary=out(TN.OUT["summary"]),
    params:
        sweep=lambda wc: TN.stage(PLAN, wc.dataset, wc.model)["sweep"],
    log:
        "logs/{dataset}/{model}/tunnels/summary.log",
    benchmark:
        "logs/benchmarks/tunnel_summary/{dataset}/{model}/tunnels/summary.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/tunnel_summary.py"


rule plot_tunnels:
    input:
        code=lib("figures.sweeps"),
        profiles=rules.tunnel_summary.output.profiles,
        summary=rules.tunnel_summary.output.summary,
    output:
        tunnel_profiles=report(out(TN.OUT["fig"], name="tunnel_profiles", ext="png"),
                               caption="../../src/losslab/figures/captions/tunnel_profiles.rst", category="Tunnels"),
        tunnel_widths=report(out(TN.OUT["fig"], name="tunnel_widths", ext="png"),
                             caption="../../src/losslab/figures/captions/tunnel_widths.rst", category="Tunnels"),
        pdfs=[out(TN.OUT["fig"], name=n, ext="pdf") for n in TN.FIGURES],
    log:
        "logs/{dataset}/{model}/figures/tunnels.log",
    benchmark:
        "logs/benchmarks/plot_tunnels/{dataset}/{model}/figures/tunnels.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_tunnels.py"
