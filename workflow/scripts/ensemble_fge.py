"""Fast Geometric Ensembling from one endpoint: members at the low end of each cycle, ensembles of the
first n members at budget E + (epochs until the n-th collection)."""
from pathlib import Path

from losslab import ensembles, fge, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
seed = int(snakemake.wildcards.seed)
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
start = job.load_point(snakemake.input.start, ctx.fm, map_location=device)
s = fge.FgeSettings.from_dict(p.fge)
state = Path(snakemake.output.members).with_name(f"resume-seed{seed}.pt")
run = fge.train_fge(ctx.fm, start, ctx.ds, s, seed, ctx.ev.bn_x, device, state_path=state,
                    checkpoint_every=snakemake.config["endpoints"]["checkpoint_every"], bn_batch=ctx.bn_batch)
io.save_tensors({"format": "losslab.members/1", "members": run.members.cpu(),
                 "buffers": [{k: v.cpu() for k, v in b.items()} for b in run.member_buffers],
                 "meta": {"method": "fge", "status": run.status, "layout": ctx.fm.layout}}, snakemake.output.members)
rows = ensembles.growing(ctx.fm, run.members, ctx.ev, ctx.task, run.member_buffers, bn_batch=ctx.bn_batch)
rows["budget_epochs"] = [p.epochs + s.collect_epochs[n - 1] for n in rows["n_members"]]
io.write_parquet(rows.assign(method="fge", instance=str(seed), members=f"from seed {seed}", status=run.status,
                             dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model,
                             n_train=ctx.ev.train_x.shape[0], n_test=ctx.ev.test_x.shape[0]), snakemake.output.table)
state.unlink(missing_ok=True)
log.info("fge from seed %d: %d members, status %s", seed, run.members.shape[0], run.status)
