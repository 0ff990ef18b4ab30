"""The straight line from a to b: naive, after each alignment, and with REPAIR; barriers."""
import torch

from losslab import align, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
a = job.load_point(snakemake.input.w1, ctx.fm, map_location=device)
b = job.load_point(snakemake.input.w2, ctx.fm, map_location=device)
aligned = {job.load_point(f, ctx.fm, map_location=device).meta["alignment"]: f for f in snakemake.input.aligned}
vectors = {m: job.load_point(aligned[m], ctx.fm, map_location=device).flat for m in p.lines["methods"]}
spec = align.permutation_spec(ctx.fm.module, ctx.ev.bn_x[:8])
alphas = torch.linspace(0, 1, p.lines["points"]).tolist()
lines = align.compare_lines(spec, ctx.fm, a, b, ctx.ev, ctx.task, alphas, vectors, repair=p.lines["repair"])
ids = dict(dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model, **p.ids,
           n_train=ctx.ev.train_x.shape[0], n_test=ctx.ev.test_x.shape[0])
barriers = align.barriers(lines).assign(**ids)
io.write_parquet(lines.assign(**ids), snakemake.output.lines)
io.write_parquet(barriers, snakemake.output.barriers)
log.info("barriers:\n%s", barriers[barriers.split == "train"].to_string())
