"""Snapshot ensembles (cosine cycles from one endpoint, one snapshot per cycle) and SWA of the same
snapshots: the first n snapshots at budget E + n x cycle."""
from pathlib import Path

import pandas as pd
import torch

from losslab import ensembles, io, job, swa
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
seed = int(snakemake.wildcards.seed)
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
start = job.load_point(snakemake.input.start, ctx.fm, map_location=device)
s = swa.SwaSettings(schedule="cyclic", **p.snapshots)
state = Path(snakemake.output.members).with_name(f"resume-seed{seed}.pt")
run = swa.continue_training(ctx.fm, start, ctx.ds, s, seed, ctx.ev.bn_x, device, state_path=state,
                            checkpoint_every=snakemake.config["endpoints"]["checkpoint_every"], bn_batch=ctx.bn_batch)
io.save_tensors({"format": "losslab.members/1", "members": run.snapshots.cpu(),
                 "buffers": [{k: v.cpu() for k, v in b.items()} for b in run.snapshot_buffers],
                 "meta": {"method": "snapshots", "status": run.status, "layout": ctx.fm.layout}},
                snakemake.output.members)
frames = []
n_snap = run.snapshots.shape[0]
if n_snap:
    snaps = ensembles.growing(ctx.fm, run.snapshots, ctx.ev, ctx.task, bn_batch=ctx.bn_batch)
    frames.append(snaps.assign(method="snapshots", averaged=1))
    # SWA of the first n snapshots: one network (BatchNorm recomputed at the mean) at the same budget
    means = torch.stack([run.snapshots[:n].mean(0) for n in range(1, n_snap + 1)])
    outs = ensembles.member_outputs(ctx.fm, means, ctx.ev, bn_batch=ctx.bn_batch)
    for i in range(n_snap):
        rows = pd.DataFrame(ensembles.subset_rows(outs, means, ctx.ev, ctx.task, [[i]]))
        frames.append(rows.assign(method="swa", averaged=i + 1))
table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
    {"split": ["train", "test"], "n_members": 0, "loss": float("nan"), "accuracy": float("nan"), "averaged": 0,
     "method": "snapshots"})
snapshots_used = table["n_members"].where(table["method"] == "snapshots", table["averaged"])
table["budget_epochs"] = p.epochs + snapshots_used * s.snapshot_every
io.write_parquet(table.assign(instance=str(seed), members=f"from seed {seed}", status=run.status,
                              dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model,
                              n_train=ctx.ev.train_x.shape[0], n_test=ctx.ev.test_x.shape[0]), snakemake.output.table)
state.unlink(missing_ok=True)
log.info("snapshots from seed %d: %d snapshots, status %s", seed, n_snap, run.status)
