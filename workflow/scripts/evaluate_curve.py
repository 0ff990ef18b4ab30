"""Evaluate a curve and the straight line along t; barriers; ensembles (losslab.curves)."""
from losslab import curves, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
spec = snakemake.params.spec
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(spec, device)
ds, ev, fm = ctx.ds, ctx.ev, ctx.fm
w1, w2 = (job.load_point(p, fm) for p in (snakemake.input.w1, snakemake.input.w2))
cv = curves.load_curve(snakemake.input.ckpt)
try:
    along, ens, summary = curves.evaluate_curve(fm, cv["kind"], cv["control"], ev, ds.task, snakemake.params.points,
                                                spec["curve"]["l2"], spec["evaluation"]["batch_size"], w1.flat, w2.flat)
except io.ArtifactError:
    raise io.ArtifactError(f"curve {snakemake.input.ckpt} does not end at the endpoints {snakemake.input.w1}, "
                           f"{snakemake.input.w2}") from None
ids = dict(dataset=wc.dataset, model=wc.model, **spec["ids"], kind=cv["kind"], bends=int(spec["curve"]["bends"]),
           curve_status=cv["meta"].get("status", "ok"), **ev.sizes)
io.write_parquet(along.assign(**ids), snakemake.output.along)
io.write_parquet(ens.assign(**ids), snakemake.output.ensemble)
io.write_parquet(summary.assign(**ids), snakemake.output.summary)
for _, r in summary[summary.metric.isin(["loss", "error"])].iterrows():
    log.info("%s %s %s barrier %.4f", r.path, r.split, r.metric, r.barrier)
