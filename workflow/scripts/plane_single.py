"""A plane in one job (its grid is one tile): define it, evaluate the whole grid, write the tables."""
from losslab import data, io
from losslab.device import get_device, setup_job
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.planes import EngineOptions, define_plane, points_table, save_plane, whole_grid

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p, g = snakemake.params.plane, snakemake.params.grid
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
spec = io.load_point(snakemake.input.spec)
plane = define_plane(p, list(snakemake.input.points), spec)
ds = data.load_dataset(**g["dataset"])
ev = data.eval_from_config(ds, g, device)
fm = FlatModel(build_model(spec.model_spec, ds.in_shape, ds.num_outputs).to(device))
opts = EngineOptions.from_dict({**g["engine"], "bn_batch": g["evaluation"]["bn_batch"]},
                               snakemake.config["compute"]["memory_budget_mb"])
grid = whole_grid(fm, plane, ev, ds.task, g["resolution"], opts, device, dataset=wc.dataset, model=wc.model,
                  plane=wc.plane)
save_plane(plane, snakemake.output.plane)
io.write_parquet(points_table(plane, p), snakemake.output.points)
io.write_parquet(grid, snakemake.output.grid)
log.info("plane %s: %d x %d grid in one job", wc.plane, g["resolution"], g["resolution"])
