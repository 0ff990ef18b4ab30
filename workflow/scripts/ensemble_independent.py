"""Independent ensembles: n of the trained endpoints (every n-subset up to max_subsets), budget n x E."""
import itertools

import pandas as pd
import torch

from losslab import ensembles, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
points = [job.load_point(f, ctx.fm, map_location=device) for f in snakemake.input.ckpts]
members = torch.stack([pt.flat for pt in points])
outs = ensembles.member_outputs(ctx.fm, members, ctx.ev, [pt.buffers for pt in points], bn_batch=ctx.bn_batch)
frames = []
for n in range(1, len(points) + 1):
    subsets = list(itertools.islice(itertools.combinations(range(len(points)), n), p.max_subsets))
    for i, subset in enumerate(subsets):
        rows = pd.DataFrame(ensembles.subset_rows(outs, members, ctx.ev, ctx.task, [subset]))
        frames.append(rows.assign(instance=str(i), members=",".join(str(p.seeds[j]) for j in subset),
                                  budget_epochs=n * p.epochs))
table = pd.concat(frames, ignore_index=True).assign(method="independent", dataset=snakemake.wildcards.dataset,
                                                    model=snakemake.wildcards.model, n_train=ctx.ev.train_x.shape[0],
                                                    n_test=ctx.ev.test_x.shape[0])
io.write_parquet(table, snakemake.output.table)
