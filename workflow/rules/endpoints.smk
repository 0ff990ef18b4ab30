# Stage: independent endpoints. Library: src/losslab/train.py (+ data, models, flat).
# One job trains one network: results/{dataset}/{model}/endpoints/{setting}/seed{seed}/.
# Later stages (curves, planes, connectors, sweeps) consume these checkpoints; sweeps add
# settings with register_setting() and reuse this rule.


rule train_endpoint:
    input:
        code=lib("data", "models", "flat", "train"),
    output:
        ckpt=f"{RES}/{{dataset}}/{{model}}/endpoints/{{setting}}/seed{{seed}}/model.pt",
        metrics=f"{RES}/{{dataset}}/{{model}}/endpoints/{{setting}}/seed{{seed}}/metrics.parquet",
    params:
        spec=endpoint_params,
    log:
        "logs/{dataset}/{model}/endpoints/{setting}/seed{seed}.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=120, mem_mb=8000),
    script:
        "../scripts/train_endpoint.py"


rule endpoint_summary:
    input:
        code=lib("figures"),
        metrics=expand(endpoint_path("{setting}", "{seed}", "metrics.parquet"),
                       setting=sorted(config["endpoints"]["settings"]), seed=config["endpoints"]["seeds"]),
    output:
        table=f"{BASE}/endpoints/summary.parquet",
    log:
        f"logs/{DS}/{MODEL}/endpoints/summary.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/endpoint_summary.py"


rule plot_endpoint_training:
    input:
        code=lib("figures"),
        metrics=rules.endpoint_summary.input.metrics,
    output:
        png=report(f"{BASE}/figures/endpoint_training.png", caption="../report/endpoint_training.rst", category="Endpoints"),
        pdf=f"{BASE}/figures/endpoint_training.pdf",
    log:
        f"logs/{DS}/{MODEL}/figures/endpoint_training.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_endpoint_training.py"


ALL_TARGETS += [rules.endpoint_summary.output.table, rules.plot_endpoint_training.output.png]
# The checkpoints themselves are targets too: Snakemake does not rebuild a deleted intermediate
# file whose consumers are up to date, so without this a deleted endpoint would stay missing.
ALL_TARGETS += expand(endpoint_path("{setting}", "{seed}", "{name}"), setting=sorted(config["endpoints"]["settings"]),
                      seed=config["endpoints"]["seeds"], name=["model.pt", "metrics.parquet"])
