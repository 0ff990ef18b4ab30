"""Hessian spectra along a curve and along the straight line between its endpoints, at spectra.ts
(losslab.hessian.spectra_tables)."""
import torch

from losslab import curves, data, hessian, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
spec, sp = p.spec, p.spectra
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(spec, device)
w1, w2 = (job.load_point(f, ctx.fm).flat.to(device) for f in (snakemake.input.w1, snakemake.input.w2))
cv = curves.load_curve(snakemake.input.ckpt)
ts = torch.tensor(sorted(p.ts), dtype=w1.dtype, device=device)
paths = {"curve": curves.point(cv["kind"], cv["control"].to(device), ts), "line": curves.line_points(w1, w2, ts)}
vectors = [v for path in paths.values() for v in path]
labels = [{"path": name, "t": float(t)} for name in paths for t in ts.tolist()]
x, y = data.subset(ctx.ev.train_x, ctx.ev.train_y, sp["samples"], sp["seed"])
tables = hessian.spectra_tables(ctx.fm, vectors, labels, x, y, ctx.task, sp, ctx.ev.bn_x, p.density["points"],
                                p.density["sigma"], log=log)
ids = dict(dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model, **spec["ids"])
for name, table in tables.items():
    io.write_parquet(table.assign(**ids), snakemake.output[name])
