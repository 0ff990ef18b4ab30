"""Short directions (converged Hessian eigenvalues above a threshold, by Lanczos from several
starts) at each connector node."""
from losslab import connectors, hessian, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
sd = p.short
device = get_device(snakemake.config["compute"]["device"])
ds, fm, X, pts, ev, x, y = connectors.load_hessian_inputs(snakemake.input.optima, p.dataset, p.evaluation, sd, device)
nodes = io.load_tensors(snakemake.input.nodes, device)
table = hessian.short_direction_rows(fm, nodes["points"], x, y, ds.task, sd, ev.bn_x, progress=True)
table["t"] = nodes["t"].cpu().numpy()[table["index"].to_numpy()]
table = table.rename(columns={"index": "node"}).assign(dataset=ds.name, model=pts[0].model_spec["name"],
                                                       samples=x.shape[0], n_train=x.shape[0], n_test=0)
io.write_parquet(table, snakemake.output.table)
