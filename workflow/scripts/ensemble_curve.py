"""Curve ensembles: m points evenly spaced in t along a trained curve (both endpoints included),
budget: the two endpoints' training plus the curve's."""
import pandas as pd
import torch

from losslab import curves, ensembles, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
cv = curves.load_curve(snakemake.input.ckpt, device)
frames = []
for m in p.members:
    members = curves.point(cv["kind"], cv["control"], torch.linspace(0, 1, m, dtype=cv["control"].dtype, device=device))
    outs = ensembles.member_outputs(ctx.fm, members, ctx.ev, bn_batch=ctx.bn_batch)
    frames.append(pd.DataFrame(ensembles.subset_rows(outs, members, ctx.ev, ctx.task, [range(m)])))
table = pd.concat(frames, ignore_index=True).assign(
    method="curve", instance=snakemake.wildcards.curve, members=f"{cv['kind']} curve {snakemake.wildcards.curve}",
    budget_epochs=p.budget, dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model,
    n_train=ctx.ev.train_x.shape[0], n_test=ctx.ev.test_x.shape[0])
io.write_parquet(table, snakemake.output.table)
