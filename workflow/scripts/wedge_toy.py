"""Toy wedge experiments (thin wrapper around losslab.wedge); the rule name picks the experiment."""
from losslab import io, wedge
from losslab.device import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
c = snakemake.params.common
e = snakemake.params.exp
base = dict(D=c["D"], s=c["s"], seed=c["seed"], rotate=c["rotate"], init_mean=c["init_mean"], init_std=c["init_std"])
rule = snakemake.rule
log.info("%s: %s %s", rule, c, e)
if rule == "wedge_hyperplanes":
    table = wedge.hyperplane_experiment(dims=e["dims"], planes=e["planes"], steps=e["steps"], lr=e["lr"],
                                        optimizer=c["optimizer"], **base)
    log.info("loss reaches ~0 from d = %s (s = %d)", wedge.transition_dim(table), c["s"])
    io.write_parquet(table, snakemake.output.table)
elif rule == "wedge_tunnel":
    import pandas as pd

    path, cos, summary = wedge.tunnel_experiment(segments=e["segments"], d=e["d"], subspace=e["subspace"],
                                                 steps=c["steps"], lr=c["lr"], eval_points=e["eval_points"],
                                                 optimizer=c["optimizer"], **base)
    log.info("tunnel: %s", summary)
    io.write_parquet(path, snakemake.output.path)
    io.write_parquet(cos, snakemake.output.cosines)
    io.write_parquet(pd.DataFrame([{**summary, "D": c["D"], "s": c["s"], "rotate": c["rotate"],
                                    "segments": e["segments"], "d": e["d"] if e["d"] is not None else -1,
                                    "subspace": e["subspace"] if e["d"] is not None else "full"}]),
                     snakemake.output.summary)
elif rule == "wedge_radial":
    table = wedge.radial_experiment(offset=e["offset"], directions=e["directions"], max_radius=e["max_radius"],
                                    points=e["points"], steps=c["steps"], lr=c["lr"],
                                    optimizer=c["optimizer"], **base)
    io.write_parquet(table, snakemake.output.table)
else:
    raise ValueError(f"unknown toy rule {rule}")
