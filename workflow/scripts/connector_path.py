"""Dense evaluation of the straight line and the connector: loss, accuracy, agreement, deviation cosines."""
from losslab import connectors, data, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
bs = p.evaluation["batch_size"]
ds, fm, X, pts = connectors.load_network_optima(snakemake.input.optima, p.dataset, device)
ev = data.eval_from_config(ds, {"evaluation": p.evaluation}, device)
nodes = io.load_tensors(snakemake.input.nodes, device)
path = connectors.evaluate_connector(fm, ev, ds.task, nodes["t"], nodes["points"], p.eval_points, bs)
path = path.assign(dataset=ds.name, model=pts[0].model_spec["name"], setting=pts[0].meta.get("setting"),
                   variant=nodes.get("variant", "paper"), segments=len(nodes["t"]) - 1, d=int(nodes["dim"]),
                   subspace=nodes["subspace"],
                   steps_per_node=nodes.get("steps_per_node", -1))  # how the nodes were made
io.write_parquet(path, snakemake.output.path)
cos = connectors.deviation_cosines(nodes["t"], nodes["points"]).cpu()
io.write_parquet(connectors.cosine_table(nodes["t"].cpu(), cos).assign(dataset=ds.name), snakemake.output.cosines)
tr = path[path.split == "train"]
log.info("max train loss: line %.4f, connector %.4f", tr[tr.path == "line"].loss.max(), tr[tr.path == "connector"].loss.max())
