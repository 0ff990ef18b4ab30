"""Align endpoint b onto endpoint a (weight or activation matching); save the permuted copy of b."""
from losslab import align, io, job
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
method = snakemake.wildcards.method
device = get_device(snakemake.config["compute"]["device"])
ctx = job.context(p.spec, device)
a = job.load_point(snakemake.input.w1, ctx.fm, map_location=device)
b = job.load_point(snakemake.input.w2, ctx.fm, map_location=device)
spec = align.permutation_spec(ctx.fm.module, ctx.ev.bn_x[:8])
found = align.align(spec, ctx.fm, a, b, method, ctx.ev.bn_x, seed=p.align["seed"], max_iter=p.align["max_iter"])
point = align.permute_point(spec, ctx.fm, b, found.perms, alignment=method, aligned_to=str(snakemake.input.w1),
                            align_converged=bool(found.converged),
                            align_groups=len(spec.groups))
log.info("%s: %d groups, %.3f s, converged %s; distance to a: %.4f -> %.4f", method, len(spec.groups), found.seconds,
         found.converged, float((b.flat - a.flat).norm()), float((point.flat - a.flat).norm()))
io.save_point(point, snakemake.output.aligned)
