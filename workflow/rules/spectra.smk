# Stage: Hessian spectra at the points of interest. Library: src/losslab/hessian.py (converged
# Lanczos top eigenvalues and short-direction counts, Hutchinson trace, SLQ density, all on
# torch.func Hessian-vector products); figures in src/losslab/figures/spectra.py. The plan
# (src/losslab/plan/spectra.py) picks the points from the curves and connectors stages:
#   {results}/{dataset}/{model}/spectra/
#       curves/{curve}/{counts,eigenvalues,density}.parquet        curve and line at spectra.ts
#       connectors/{connector}/...                                 the connector's nodes
#       mconnectors/{mconnector}/...                               the m-connector centres
from losslab.plan import spectra as SP



rule spectra_curve:
    input:
        unpack(lambda wc: SP.curve_inputs(PLAN, wc)),
        code=lib("job", "data", "models", "flat", "curves", "hessian"),
    output:
        **{t: out(SP.OUT["curve"], table=t) for t in SP.TABLES},
    params:
        spec=lambda wc: SP.curve_spec(PLAN, wc),
        spectra=SP.settings(PLAN),
        ts=xcfg("spectra", "ts"),
        density=xcfg("spectra", "density"),
    log:
        "logs/{dataset}/{model}/spectra/curves/{curve}.log",
    benchmark:
        "logs/benchmarks/spectra_curve/{dataset}/{model}/spectra/curves/{curve}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/spectra_curve.py"


rule spectra_connector:
    input:
        unpack(lambda wc: SP.connector_inputs(PLAN, wc)),
        code=lib("job", "data", "models", "flat", "hessian"),
    output:
        **{t: out(SP.OUT["connector"], table=t) for t in SP.TABLES},
    params:
        spec=lambda wc: SP.spec(PLAN, wc, PLAN.config_of(wc.dataset, wc.model)["connectors"]["setting"]),
        spectra=SP.settings(PLAN),
        density=xcfg("spectra", "density"),
    log:
        "logs/{dataset}/{model}/spectra/connectors/{connector}.log",
    benchmark:
        "logs/benchmarks/spectra_connector/{dataset}/{model}/spectra/connectors/{connector}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/spectra_points.py"


rule spectra_centres:
    input:
        unpack(lambda wc: SP.centre_inputs(PLAN, wc)),
        code=lib("job", "data", "models", "flat", "hessian"),
    output:
        **{t: out(SP.OUT["centres"], table=t) for t in SP.TABLES},
    params:
        spec=lambda wc: SP.spec(PLAN, wc, PLAN.config_of(wc.dataset, wc.model)["connectors"]["setting"]),
        spectra=SP.settings(PLAN),
        density=xcfg("spectra", "density"),
    log:
        "logs/{dataset}/{model}/spectra/mconnectors/{mconnector}.log",
    benchmark:
        "logs/benchmarks/spectra_centres/{dataset}/{model}/spectra/mconnectors/{mconnector}.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/spectra_points.py"


rule plot_spectra:
    input:
        unpack(lambda wc: SP.figure_inputs(PLAN, wc)),
        code=lib("figures.spectra"),
    output:
        spectra_density=report(out(SP.OUT["fig"], name="spectra_density", ext="png"),
                               caption="../../src/losslab/figures/captions/spectra_density.rst", category="Spectra"),
        spectra_top_trace=report(out(SP.OUT["fig"], name="spectra_top_trace", ext="png"),
                                 caption="../../src/losslab/figures/captions/spectra_top_trace.rst", category="Spectra"),
        spectra_short=report(out(SP.OUT["fig"], name="spectra_short", ext="png"),
                             caption="../../src/losslab/figures/captions/spectra_short.rst", category="Spectra"),
        pdfs=[out(SP.OUT["fig"], name=n, ext="pdf") for n in SP.FIGURES],
    log:
        "logs/{dataset}/{model}/figures/spectra.log",
    benchmark:
        "logs/benchmarks/plot_spectra/{dataset}/{model}/figures/spectra.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_spectra.py"
