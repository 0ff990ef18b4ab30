"""Evaluate a curve and the straight line along t; barriers; ensembles (losslab.curves)."""
import torch

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
control = cv["control"]
if not (torch.equal(control[0], w1.flat) and torch.equal(control[-1], w2.flat)):
    raise io.ArtifactError(f"curve {snakemake.input.ckpt} does not end at the endpoints {snakemake.input.w1}, {snakemake.input.w2}")
ts = torch.linspace(0, 1, snakemake.params.points, dtype=control.dtype)
paths = {"curve": curves.point(cv["kind"], control.to(device), ts.to(device)),
         "line": curves.line_points(w1.flat.to(device), w2.flat.to(device), ts.to(device))}
along, ens = curves.evaluate_paths(fm, paths, ts, ev, ds.task, spec["curve"]["l2"], batch_size=spec["evaluation"]["batch_size"])
summary = curves.summarise(along, ("objective", "loss", "error") if ds.task == "classification" else ("objective", "loss"))
ids = dict(dataset=wc.dataset, model=wc.model, **spec["ids"], kind=cv["kind"], bends=int(spec["curve"]["bends"]),
           curve_status=cv["meta"].get("status", "ok"), **ev.sizes)
io.write_parquet(along.assign(**ids), snakemake.output.along)
io.write_parquet(ens.assign(**ids), snakemake.output.ensemble)
io.write_parquet(summary.assign(**ids), snakemake.output.summary)
for _, r in summary[summary.metric.isin(["loss", "error"])].iterrows():
    log.info("%s %s %s barrier %.4f", r.path, r.split, r.metric, r.barrier)
