"""Define one plane (origin, orthonormal or random basis, grid bounds) and its defining points."""
from losslab import io
from losslab.device import setup_job
from losslab.planes import define_plane, points_table, save_plane

log = setup_job(snakemake.log[0], config=snakemake.config)
p = snakemake.params.plane
plane = define_plane(p, list(snakemake.input.points), io.load_point(snakemake.input.spec))
save_plane(plane, snakemake.output.plane)
io.write_parquet(points_table(plane, p), snakemake.output.points)
log.info("plane %s: points %s, bounds %s", p["name"], plane.points, plane.meta["bounds"])
