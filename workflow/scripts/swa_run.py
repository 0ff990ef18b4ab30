"""Continue training from one endpoint with every (schedule, lr) of the SWA stage, snapshot, and
compare SWA / ensemble / snapshots; one job per endpoint seed, one set of files per run."""
from pathlib import Path

import torch

from losslab import io, job, swa
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
wc = snakemake.wildcards
spec = snakemake.params.spec
common = dict(snakemake.params.swa)
line_points = common.pop("line_points")
start_setting = common.pop("start_setting")
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(spec, device)
ds, ev, fm, e = ctx.ds, ctx.ev, ctx.fm, spec["evaluation"]
start = job.load_point(snakemake.input.start, fm, map_location=device)
seed = int(wc.seed)
out = snakemake.output
for i, r in enumerate(snakemake.params.runs):
    settings = swa.SwaSettings(**common, lr=r["lr"], schedule=r["schedule"])
    ids = dict(dataset=wc.dataset, model=wc.model, schedule=settings.schedule, lr=settings.lr, seed=seed,
               start_setting=start_setting, **ev.sizes)
    if start.status != "ok" or not bool(start.flat.isfinite().all()):
        log.warning("start endpoint %s has status %s; recording run %s as diverged", snakemake.input.start,
                    start.status, r["id"])
        run = swa.SwaRun(torch.empty(0, fm.numel), [], torch.full((fm.numel,), float("nan")), {}, "diverged")
    else:
        log.info("run %s: continuing %s from %s with %s lr=%g for %d epochs", r["id"], settings.schedule,
                 snakemake.input.start, settings.optimizer, settings.lr, settings.epochs)
        state = Path(out.snapshots[i]).with_name("resume.pt")
        run = swa.continue_training(fm, start, ds, settings, seed, ev.bn_x, device, state_path=state,
                                    checkpoint_every=snakemake.config["endpoints"]["checkpoint_every"])
        state.unlink(missing_ok=True)
    points, lines = swa.evaluate_run(fm, run, ev, ds.task, line_points)
    summary = swa.summarise(points, lines)
    meta = dict(status=run.status, bn_policy=fm.bn_policy(e["bn_size"]), optimizer=settings.optimizer)
    io.save_tensors({"format": "losslab.snapshots/1", "snapshots": run.snapshots.cpu(),
                     "snapshot_buffers": [{k: v.cpu() for k, v in b.items()} for b in run.snapshot_buffers],
                     "swa": run.swa.cpu(), "swa_buffers": {k: v.cpu() for k, v in run.swa_buffers.items()},
                     "meta": {**ids, "status": run.status, "layout": fm.layout}},
                    out.snapshots[i])
    io.write_parquet(points.assign(**ids, **meta), out.points[i])
    io.write_parquet(lines.assign(**ids, **meta), out.lines[i])
    io.write_parquet(summary.assign(**ids, **meta), out.summary[i])
    log.info("run %s done: status %s\n%s", r["id"], run.status, summary.to_string())
