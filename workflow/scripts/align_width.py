"""Barrier of the straight line before and after alignment, for every pair of seeds of one width."""
import pandas as pd
import torch

from losslab import align, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
w, ln = p.width, p.lines
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
points = {s: job.load_point(f, ctx.fm, map_location=device) for s, f in zip(w["seeds"], snakemake.input.ckpts)}
spec = align.permutation_spec(ctx.fm.module, ctx.ev.bn_x[:8])
alphas = torch.linspace(0, 1, ln["points"]).tolist()
frames = []
for sa, sb in w["pairs"]:
    a, b = points[sa], points[sb]
    found = align.align(spec, ctx.fm, a, b, w["method"], ctx.ev.bn_x, seed=ln["seed"], max_iter=ln["max_iter"])
    vec_b = align.permute(spec, ctx.fm, b.flat, None, found.perms)[0]
    lines = align.compare_lines(spec, ctx.fm, a, b, ctx.ev, ctx.task, alphas, {w["method"]: vec_b}, repair=ln["repair"])
    frames.append(align.barriers(lines).assign(seed_a=sa, seed_b=sb))
    log.info("width %g seeds %d-%d done", w["width"], sa, sb)
table = pd.concat(frames, ignore_index=True).assign(
    dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model, setting=snakemake.wildcards.setting,
    width=w["width"], n_params=ctx.fm.numel, n_train=ctx.ev.train_x.shape[0], n_test=ctx.ev.test_x.shape[0])
io.write_parquet(table, snakemake.output.barriers)
