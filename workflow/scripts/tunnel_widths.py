"""Radial tunnel widths around the optima of one setting (thin wrapper around losslab.tunnels)."""
import pandas as pd

from losslab import io, job, tunnels
from losslab.device import get_device, setup_job
from losslab.seeds import derive_seed

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
wc = snakemake.wildcards
spec = snakemake.params.spec
tc = snakemake.params.tunnels
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(spec, device)
ds, ev, fm, e = ctx.ds, ctx.ev, ctx.fm, spec["evaluation"]
chunk = tunnels.chunk_for_budget(fm, ds.in_shape, min(e["train_size"], len(ds.train_y)),
                                 snakemake.config["compute"]["memory_budget_mb"])
log.info("evaluating %d weight vectors per vmap pass", chunk)
ids = dict(dataset=wc.dataset, model=wc.model, setting=wc.setting)

widths, profiles = [], []
for seed, path in zip(snakemake.params.seeds, snakemake.input.ckpts):
    point = job.load_point(path, fm, map_location=device)
    wt, pr = tunnels.probe_optimum(fm, point.flat.to(device), ctx.ev, ds.task, status=point.status,
                                   directions=tc["directions"], normalization=tc["normalization"], r_max=tc["r_max"],
                                   threshold=tc["threshold"], mode=tc["threshold_mode"],
                                   profile_points=tc["profile_points"], steps=tc["bisection_steps"],
                                   direction_seed=derive_seed(tc["direction_seed"], "directions", int(seed)),
                                   buffers=point.buffers or None, chunk=chunk, **ids, seed=seed)
    widths.append(wt)
    if wt["status"].iloc[0] != "ok":
        log.warning("seed %s: endpoint status %s; recorded as diverged without probing", seed, point.status)
        continue
    log.info("seed %s: loss0 %.4g, width mean %.3f (%d of %d rays crossed the threshold %.3g)", seed,
             wt["loss0"].iloc[0], wt["width"].mean(), int(wt["reached"].sum()), len(wt), wt["threshold"].iloc[0])
    profiles.append(pr)

prof = pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame(
    {c: pd.Series(dtype=t) for c, t in [("dataset", str), ("model", str), ("setting", str), ("seed", int),
                                         ("direction", int), ("r", float), ("loss", float), ("status", str)]})
meta = {"normalization": tc["normalization"], "threshold_mode": tc["threshold_mode"], "bn_policy": fm.bn_policy(e["bn_size"]),
        **ev.sizes}
io.write_parquet(pd.concat(widths, ignore_index=True).assign(**meta), snakemake.output.widths)
io.write_parquet(prof, snakemake.output.profile)
