"""Evaluate one tile of a plane's G x G grid (train/test loss and accuracy per point)."""
import numpy as np

from losslab import data, io
from losslab.device import get_device, setup_job
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.planes import EngineOptions, evaluate_grid, grid_axes, load_plane, tile_coords

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
g = snakemake.params.grid
wc = snakemake.wildcards
cfg = snakemake.config
device = get_device(cfg["compute"]["device"])
plane = load_plane(snakemake.input.plane)
spec = io.load_point(snakemake.input.spec)
d = g["dataset"]
ds = data.load_dataset(**d)
e = g["evaluation"]
ev = data.eval_data(ds, e["train_size"], e["test_size"], e["bn_size"], e["seed"], device)
fm = FlatModel(build_model(spec.model_spec, ds.in_shape, ds.num_outputs).to(device))
if plane.origin.numel() != fm.numel:
    raise io.ArtifactError(f"plane {snakemake.input.plane} has vectors of length {plane.origin.numel()}, "
                           f"the model has {fm.numel} parameters")
G, T = g["resolution"], g["tiles_per_side"]
xs, ys = grid_axes(plane.meta["bounds"], G)
X, Y, ix, iy = tile_coords(xs, ys, T, int(wc.i), int(wc.j))
opts = EngineOptions.from_dict({**g["engine"], "bn_batch": g["evaluation"]["bn_batch"]}, cfg["compute"]["memory_budget_mb"])
log.info("plane %s tile (%s, %s): %d points on %s", wc.plane, wc.i, wc.j, len(X), device)
df = evaluate_grid(fm, plane, X, Y, ev, ds.task, opts, device, progress=True)
df["ix"] = np.tile(ix, 2)
df["iy"] = np.tile(iy, 2)
df = df.assign(dataset=wc.dataset, model=wc.model, plane=wc.plane, tile=f"{wc.i}_{wc.j}", resolution=G, **ev.sizes)
io.write_parquet(df, snakemake.output.tile)
