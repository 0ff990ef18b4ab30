"""Optimise a connector between two endpoint optima (thin wrapper around losslab.connectors)."""
from losslab import connectors, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
o = p.opt
device = get_device(snakemake.config["compute"]["device"])
ds, fm, X, pts = connectors.load_network_optima(snakemake.input.optima, p.dataset, device)
a, b = X
train_loss = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task, o["batch_size"], o["seed"])
log.info("connector (%s variant): D=%d, %d segments, d=%s (%s), %d %s steps, lr=%g", p.variant, fm.numel, p.segments,
         o["d"], o["subspace"], o["steps"], o["optimizer"], o["lr"])
train = connectors.sampled_connector if p.variant == "sampled" else connectors.connector
res = train(train_loss, a, b, segments=p.segments, d=o["d"], steps=o["steps"], lr=o["lr"],
                           optimizer=o["optimizer"], subspace=o["subspace"], seed=o["seed"],
                           memory_budget_mb=o["memory_budget_mb"], progress=True)
full = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task)  # whole training set, deterministic
table = connectors.connector_table(res, full)
table = table.assign(dataset=ds.name, model=pts[0].model_spec["name"], setting=pts[0].meta.get("setting"),
                     seed_a=pts[0].meta.get("seed"), seed_b=pts[1].meta.get("seed"),
                     n_train=ds.train_x.shape[0], n_test=0,  # losses on the whole training set
                     variant=p.variant, steps_per_node=o["steps"])
io.write_parquet(table, snakemake.output.table)
io.save_tensors({"t": res.t.cpu(), "points": res.points.cpu(), "subspace": res.subspace, "dim": res.dim,
                     "variant": p.variant, "steps_per_node": o["steps"]},
                snakemake.output.nodes)
log.info("node losses: %s", [round(v, 4) for v in table["node_train_loss"]])
