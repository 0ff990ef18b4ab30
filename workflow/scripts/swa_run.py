"""Continue training from an endpoint, snapshot, and compare SWA / ensemble / snapshots."""
from pathlib import Path

import torch

from losslab import io, job, swa
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
wc = snakemake.wildcards
spec = snakemake.params.spec
p = dict(snakemake.params.swa)
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(spec, device)
ds, ev, fm, e = ctx.ds, ctx.ev, ctx.fm, spec["evaluation"]
start = job.load_point(snakemake.input.start, fm, map_location=device)
line_points = p.pop("line_points")
start_setting = p.pop("start_setting")
settings = swa.SwaSettings(**p)
seed = int(snakemake.params.seed)
ids = dict(dataset=wc.dataset, model=wc.model, schedule=settings.schedule, lr=settings.lr, seed=seed,
           start_setting=start_setting, **ev.sizes)

if start.status != "ok" or not bool(start.flat.isfinite().all()):
    log.warning("start endpoint %s has status %s; recording the run as diverged", snakemake.input.start, start.status)
    run = swa.SwaRun(torch.empty(0, fm.numel), [], torch.full((fm.numel,), float("nan")), {}, "diverged")
else:
    log.info("continuing %s from %s with %s lr=%g for %d epochs", settings.schedule, snakemake.input.start,
             settings.optimizer, settings.lr, settings.epochs)
    state = Path(snakemake.output.snapshots).with_name("resume.pt")
    run = swa.continue_training(fm, start, ds, settings, seed, ev.bn_x, device, state_path=state,
                                checkpoint_every=snakemake.config["endpoints"]["checkpoint_every"])
    state.unlink(missing_ok=True)
points, lines = swa.evaluate_run(fm, run, ev, ds.task, line_points)
summary = swa.summarise(points, lines)
meta = dict(status=run.status, bn_policy=fm.bn_policy(e["bn_size"]), optimizer=settings.optimizer)
io.save_tensors({"format": "losslab.snapshots/1", "snapshots": run.snapshots.cpu(),
                 "snapshot_buffers": [{k: v.cpu() for k, v in b.items()} for b in run.snapshot_buffers],
                 "swa": run.swa.cpu(), "swa_buffers": {k: v.cpu() for k, v in run.swa_buffers.items()},
                 "meta": {**{k: v for k, v in ids.items()}, "status": run.status, "layout": fm.layout}},
                snakemake.output.snapshots)
io.write_parquet(points.assign(**ids, **meta), snakemake.output.points)
io.write_parquet(lines.assign(**ids, **meta), snakemake.output.lines)
io.write_parquet(summary.assign(**ids, **meta), snakemake.output.summary)
log.info("done: status %s\n%s", run.status, summary.to_string())
