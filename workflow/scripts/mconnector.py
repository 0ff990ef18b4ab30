"""Optimise the barycentric-grid nodes of an m-connector between three (or more) optima."""
import pandas as pd
import torch

from losslab import connectors, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
o = p.opt
device = get_device(snakemake.config["compute"]["device"])
ds, fm, X, pts = connectors.load_network_optima(snakemake.input.optima, p.dataset, device)
train_loss = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task, o["batch_size"], o["seed"])
if p.variant == "sampled":
    res = connectors.sampled_m_connector(train_loss, X, p.resolution, o["d"], o["steps"], o["lr"], o["optimizer"],
                                         o["seed"], o["memory_budget_mb"], progress=True)
else:
    res = connectors.m_connector(train_loss, X, p.resolution, o["d"], o["steps"], o["lr"], o["optimizer"], o["seed"],
                                 o["memory_budget_mb"], progress=True)
full = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task)
rows = []
with torch.no_grad():
    for k, (w, x) in enumerate(zip(res.bary, res.points)):
        flat = w.to(X.device, X.dtype) @ X
        rows.append({"node": k, **{f"w{i}": float(v) for i, v in enumerate(w)}, "flat_train_loss": float(full(flat)),
                     "node_train_loss": float(full(x)), "status": res.status[k]})
io.write_parquet(pd.DataFrame(rows).assign(dataset=ds.name, resolution=p.resolution, n=X.shape[0],
                                           n_train=ds.train_x.shape[0], n_test=0, variant=p.variant,
                                           steps_per_node=o["steps"]),  # losses on the whole training set
                 snakemake.output.table)
io.save_tensors({"bary": res.bary.cpu(), "points": res.points.cpu(), "resolution": res.resolution,
                  "variant": p.variant, "steps_per_node": o["steps"],
                  "dim": o["d"] or fm.numel - (X.shape[0] - 1), "subspace": "full" if o["d"] is None else "random"},
                 snakemake.output.nodes)
