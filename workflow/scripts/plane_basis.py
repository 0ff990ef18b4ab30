"""Define one plane (origin, orthonormal or random basis, grid bounds) and its defining points."""
import pandas as pd

from losslab import io
from losslab.device import setup_job
from losslab.planes import curve_plane, grid_bounds, plane_from_points, random_plane, save_plane

log = setup_job(snakemake.log[0], config=snakemake.config)
p = snakemake.params.plane
paths = list(snakemake.input.points)
spec = io.load_point(snakemake.input.spec)
if p["kind"] == "points":
    pts = {n: io.load_point(path) for n, path in zip(p["names"], paths)}
    io.check_compatible(pts)
    plane = plane_from_points(*[pt.flat for pt in pts.values()], names=tuple(p["names"]))
    extent = None
elif p["kind"] == "random":
    r = p["random"]
    pt = io.load_point(paths[0])
    plane = random_plane(pt.flat, r["direction_seed"], r["normalization"], layout=pt)
    plane.points = {p["names"][0]: (0.0, 0.0)}
    extent = r["extent"]
elif p["kind"] == "curve":
    plane = curve_plane(paths[0])
    extent = None
else:
    raise ValueError(f"unknown plane kind {p['kind']!r}")
if plane.origin.numel() != spec.flat.numel():
    raise io.ArtifactError(f"plane {p['name']}: its vectors have {plane.origin.numel()} entries but the model of "
                           f"{snakemake.input.spec} has {spec.flat.numel()} parameters")
plane.meta.update(name=p["name"], bounds=list(grid_bounds(plane, p["margin"], extent)), model_spec=spec.meta.get("model_spec"))
save_plane(plane, snakemake.output.plane)
norm = (p.get("random") or {}).get("normalization", "")
io.write_parquet(pd.DataFrame([{"plane": p["name"], "kind": p["kind"], "normalization": norm, "point": n, "x": xy[0], "y": xy[1]}
                               for n, xy in plane.points.items()]), snakemake.output.points)
log.info("plane %s: points %s, bounds %s", p["name"], plane.points, plane.meta["bounds"])
