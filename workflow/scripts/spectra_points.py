"""Hessian spectra at saved points: the connector's nodes (``nodes``: points and t) or the
m-connector centres (``centres``: points and n) (losslab.hessian.spectra_tables)."""
from losslab import data, hessian, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
spec, sp = p.spec, p.spectra
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(spec, device)
for f in snakemake.input.optima:
    job.load_point(f, ctx.fm)  # the optima fit this network
if "nodes" in snakemake.input.keys():
    saved = io.load_tensors(snakemake.input.nodes, device)
    labels = [{"path": "connector", "node": i, "t": float(t)} for i, t in enumerate(saved["t"].tolist())]
else:
    saved = io.load_tensors(snakemake.input.centres, device)
    labels = [{"path": "centre", "n": int(n)} for n in saved["n"].tolist()]
x, y = data.subset(ctx.ev.train_x, ctx.ev.train_y, sp["samples"], sp["seed"])
tables = hessian.spectra_tables(ctx.fm, list(saved["points"]), labels, x, y, ctx.task, sp, ctx.ev.bn_x,
                                p.density["points"], p.density["sigma"], log=log)
ids = dict(dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model)
for name, table in tables.items():
    io.write_parquet(table.assign(**ids), snakemake.output[name])
