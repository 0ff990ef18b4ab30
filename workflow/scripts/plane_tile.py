"""Evaluate one tile of a plane's G x G grid (train/test loss and accuracy per point)."""
from losslab import data, io
from losslab.device import get_device, setup_job
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.planes import EngineOptions, load_plane, tile_table

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
g = snakemake.params.grid
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
plane = load_plane(snakemake.input.plane)
ds = data.load_dataset(**g["dataset"])
ev = data.eval_from_config(ds, g, device)
fm = FlatModel(build_model(io.load_point(snakemake.input.spec).model_spec, ds.in_shape, ds.num_outputs).to(device))
opts = EngineOptions.from_dict({**g["engine"], "bn_batch": g["evaluation"]["bn_batch"]},
                               snakemake.config["compute"]["memory_budget_mb"])
log.info("plane %s tile (%s, %s) on %s", wc.plane, wc.i, wc.j, device)
df = tile_table(fm, plane, ev, ds.task, g["resolution"], g["tiles_per_side"], int(wc.i), int(wc.j), opts, device)
io.write_parquet(df.assign(dataset=wc.dataset, model=wc.model, plane=wc.plane), snakemake.output.tile)
