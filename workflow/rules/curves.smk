# Stage: mode-connecting curves (Garipov et al.). Library: src/losslab/curves.py (training,
# evaluation, summaries) and src/losslab/curve_figures.py (figures from Parquet).
#   {results}/{dataset}/{model}/curves/{kind}{bends}/{setting}/seed{a}-seed{b}/
#       curve.pt            final curve (format losslab.curve/1)
#       epochs.pt           the curve after each epoch, E = 0 (initial) .. epochs
#       train_log.parquet   training loss per epoch
#       along.parquet       train/test loss, NLL, accuracy along t, curve AND line
#       summary.parquet     barriers and arc-length-weighted means per path
#       ensemble.parquet    ensemble of w1 with phi(t) (blog Figure 8)
# The plan (src/losslab/plan/curves.py) lists every curve: the configured pairs of the main
# experiment and the bezier1 curve of the 1-D regression problem (blog Figure 7), whose
# functions are drawn by curve_predictions / plot_curve_functions.
from losslab.plan import curves as CV


rule train_curve:
    input:
        unpack(lambda wc: CV.curve_inputs(PLAN, wc)),
        code=lib("data", "models", "flat", "curves"),
    output:
        ckpt=out(CV.OUT["ckpt"]),
        log_table=out(CV.OUT["log_table"]),
        epochs=out(CV.OUT["epochs"]),
    params:
        spec=lambda wc: CV.curve_spec(PLAN, wc),
    log:
        "logs/{dataset}/{model}/curves/{curve}/train.log",
    benchmark:
        "logs/benchmarks/train_curve/{dataset}/{model}/curves/{curve}/train.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=8000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/train_curve.py"


rule evaluate_curve:
    input:
        unpack(lambda wc: CV.curve_inputs(PLAN, wc)),
        code=lib("job", "data", "models", "flat", "curves"),
        ckpt=rules.train_curve.output.ckpt,
    output:
        along=out(CV.OUT["along"]),
        summary=out(CV.OUT["summary"]),
        ensemble=out(CV.OUT["ensemble"]),
    params:
        spec=lambda wc: CV.curve_spec(PLAN, wc),
        points=lambda wc: CV.curve_def(PLAN, wc.dataset, wc.model, wc.curve)["points"],
    log:
        "logs/{dataset}/{model}/curves/{curve}/evaluate.log",
    benchmark:
        "logs/benchmarks/evaluate_curve/{dataset}/{model}/curves/{curve}/evaluate.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=8000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/evaluate_curve.py"


rule curve_summary:
    input:
        code=lib(),
        tables=lambda wc: CV.curve_files(PLAN, wc, "summary"),
    output:
        table=out(CV.OUT["gather"]),
    log:
        "logs/{dataset}/{model}/curves/summary.log",
    benchmark:
        "logs/benchmarks/curve_summary/{dataset}/{model}/curves/summary.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/gather_tables.py"


rule plot_curves:
    input:
        code=lib("figures.curves"),
        along=lambda wc: CV.curve_files(PLAN, wc, "along"),
        ensemble=lambda wc: CV.curve_files(PLAN, wc, "ensemble"),
    output:
        along=report(out(CV.OUT["along_png"]), caption="../../src/losslab/figures/captions/curves_along_t.rst", category="Curves"),
        along_pdf=out(CV.OUT["along_pdf"]),
        ensemble=report(out(CV.OUT["ensemble_png"]), caption="../../src/losslab/figures/captions/curves_ensemble.rst", category="Curves"),
        ensemble_pdf=out(CV.OUT["ensemble_pdf"]),
    log:
        "logs/{dataset}/{model}/figures/curves.log",
    benchmark:
        "logs/benchmarks/plot_curves/{dataset}/{model}/figures/curves.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_curves.py"


rule curve_predictions:
    input:
        code=lib("job", "data", "models", "flat", "curves"),
        ckpt=rules.train_curve.output.ckpt,
    output:
        predictions=out(CV.OUT["predictions"]),
        data=out(CV.OUT["data"]),
    params:
        spec=lambda wc: CV.curve_spec(PLAN, wc),
        functions=xcfg("curves", "regression", pick=("ts", "grid", "x_range")),
    log:
        "logs/{dataset}/{model}/curves/{curve}/predictions.log",
    benchmark:
        "logs/benchmarks/curve_predictions/{dataset}/{model}/curves/{curve}/predictions.tsv"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=15, mem_mb=4000),
    conda:
        "../../environment.yml"
    script:
        "../scripts/curve_predictions.py"


rule plot_curve_functions:
    input:
        code=lib("figures.curves"),
        predictions=rules.curve_predictions.output.predictions,
        data=rules.curve_predictions.output.data,
        along=rules.evaluate_curve.output.along,
    output:
        png=report(out(CV.OUT["functions_png"]), caption="../../src/losslab/figures/captions/curve_functions.rst", category="Curves"),
        pdf=out(CV.OUT["functions_pdf"]),
    log:
        "logs/{dataset}/{model}/figures/curves/{curve}/functions.log",
    benchmark:
        "logs/benchmarks/plot_curve_functions/{dataset}/{model}/figures/curves/{curve}/functions.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_curve_functions.py"
