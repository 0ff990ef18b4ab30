"""m-connector simplex ensembles: points drawn uniformly inside the simplex of three optima, on the
m-connector's piecewise-linear surface; budget: three endpoints plus the m-connector's optimisation."""
import pandas as pd

from losslab import connectors, ensembles, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
for f in snakemake.input.optima:  # the nodes were optimised between these optima: they must fit the network
    job.load_point(f, ctx.fm)
nodes = io.load_tensors(snakemake.input.nodes, device)
res = connectors.MConnectorResult(nodes["bary"], nodes["points"], [], [], [], int(nodes["resolution"]))
frames = []
for m in p.simplex["members"]:
    for sample in range(p.simplex["samples"]):
        bary = ensembles.simplex_samples(res.bary.shape[1], m, seed=1000 * m + sample)
        members = connectors.triangle_surface(res, bary).to(device)
        outs = ensembles.member_outputs(ctx.fm, members, ctx.ev, bn_batch=ctx.bn_batch)
        rows = pd.DataFrame(ensembles.subset_rows(outs, members, ctx.ev, ctx.task, [range(m)]))
        frames.append(rows.assign(instance=str(sample)))
table = pd.concat(frames, ignore_index=True).assign(
    method="simplex", members="m-connector surface", budget_epochs=p.budget, dataset=snakemake.wildcards.dataset,
    model=snakemake.wildcards.model, n_train=ctx.ev.train_x.shape[0], n_test=ctx.ev.test_x.shape[0])
io.write_parquet(table, snakemake.output.table)
