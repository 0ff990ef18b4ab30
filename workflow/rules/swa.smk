# Stage: SWA against snapshot ensembles over learning rates (paper section 4.5, Figure 6).
# Library: src/losslab/swa.py. From the trained endpoint `swa.start_setting` / seed, training
# continues with each learning rate in `swa.lrs` and each schedule in `swa.schedules`, one
# snapshot every `swa.snapshot_every` epochs. One job per (schedule, lr, seed):
# results/{dataset}/{model}/swa/{schedule}/lr{lr}/seed{seed}/{snapshots.pt,points,lines,summary}.

from types import SimpleNamespace

SWA_KEYS = ("optimizer", "momentum", "l2", "batch_size", "epochs", "snapshot_every", "cycle_min_ratio", "line_points")
SWA_LRS = {f"{lr:g}".replace("e+", "e"): float(lr) for lr in config["swa"]["lrs"]}


def _check_swa():
    s = config["swa"]
    if s["start_setting"] not in EXPERIMENTS[(DS, MODEL)]["settings"]:
        raise ValueError(f"swa.start_setting = {s['start_setting']!r} is not an endpoint setting; "
                         f"known: {', '.join(sorted(EXPERIMENTS[(DS, MODEL)]['settings']))}")
    if s["epochs"] // s["snapshot_every"] < 2:
        raise ValueError(f"swa.epochs = {s['epochs']} with swa.snapshot_every = {s['snapshot_every']} gives fewer "
                         "than 2 snapshots; raise swa.epochs or lower swa.snapshot_every")


_check_swa()
SWA_RUN = f"{BASE}/swa/{{schedule}}/lr{{lr}}/seed{{seed}}"


rule swa_run:
    input:
        code=lib("data", "models", "flat", "train", "swa"),
        start=lambda wc: endpoint_path(config["swa"]["start_setting"], wc.seed),
    output:
        snapshots=f"{SWA_RUN}/snapshots.pt",
        points=f"{SWA_RUN}/points.parquet",
        lines=f"{SWA_RUN}/lines.parquet",
        summary=f"{SWA_RUN}/summary.parquet",
    params:
        swa=lambda wc: {**{k: config["swa"][k] for k in SWA_KEYS}, "lr": SWA_LRS[wc.lr], "schedule": wc.schedule,
                        "start_setting": config["swa"]["start_setting"]},
        spec=lambda wc: {k: v for k, v in endpoint_params(
            SimpleNamespace(dataset=DS, model=MODEL, setting=config["swa"]["start_setting"])).items()
            if k in ("dataset", "model", "evaluation")},
    log:
        f"logs/{DS}/{MODEL}/swa/{{schedule}}/lr{{lr}}/seed{{seed}}.log",
    wildcard_constraints:
        schedule="constant|cyclic",
        lr="[0-9.e-]+",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/swa_run.py"


rule swa_summary:
    input:
        code=lib("swa"),
        summaries=expand(f"{SWA_RUN}/summary.parquet", schedule=config["swa"]["schedules"], lr=list(SWA_LRS),
                         seed=config["swa"]["seeds"]),
        lines=expand(f"{SWA_RUN}/lines.parquet", schedule=config["swa"]["schedules"], lr=list(SWA_LRS),
                     seed=config["swa"]["seeds"]),
    output:
        summary=f"{BASE}/swa/summary.parquet",
        lines=f"{BASE}/swa/lines.parquet",
    log:
        f"logs/{DS}/{MODEL}/swa/summary.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/swa_summary.py"


rule plot_swa:
    input:
        code=lib("figures", "sweepfigs"),
        summary=rules.swa_summary.output.summary,
        lines=rules.swa_summary.output.lines,
    output:
        accuracy=report(f"{BASE}/figures/swa_accuracy.png", caption="../report/swa_accuracy.rst", category="SWA"),
        accuracy_pdf=f"{BASE}/figures/swa_accuracy.pdf",
        lines=report(f"{BASE}/figures/swa_lines.png", caption="../report/swa_lines.rst", category="SWA"),
        lines_pdf=f"{BASE}/figures/swa_lines.pdf",
    log:
        f"logs/{DS}/{MODEL}/figures/swa.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_swa.py"


ALL_TARGETS += [rules.swa_summary.output.summary, rules.plot_swa.output.accuracy, rules.plot_swa.output.lines]
