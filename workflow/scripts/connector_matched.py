"""Matched-loss control of the connector's mid-path short directions: the point of the straight
line from optimum a toward b whose train loss equals that of the connector node nearest t = 0.5,
with its short directions counted by the same Lanczos settings."""
import numpy as np

from losslab import connectors, hessian, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
sd = p.short
device = get_device(snakemake.config["compute"]["device"])
ds, fm, X, pts, ev, x, y = connectors.load_hessian_inputs(snakemake.input.optima, p.dataset, p.evaluation, sd, device)
nodes = io.load_tensors(snakemake.input.nodes, device)
t = nodes["t"].cpu().numpy()
k = int(np.abs(t - 0.5).argmin())
full = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task)  # the nodes table's loss: whole training set
target = float(full(nodes["points"][k]).detach())
m = connectors.matched_loss_point(full, nodes["points"][0], nodes["points"][-1], target, rtol=connectors.MATCH_RTOL)
table = hessian.short_direction_rows(fm, m["point"][None], x, y, ds.task, sd, ev.bn_x).drop(columns="index")
table = table.assign(node=k, t=float(t[k]), node_train_loss=target, t_line=m["t"], control_train_loss=m["loss"],
                     matched=m["matched"], rtol=connectors.MATCH_RTOL, dataset=ds.name, model=pts[0].model_spec["name"],
                     samples=x.shape[0], n_train=ds.train_x.shape[0], n_test=0)  # losses on the whole training set
io.write_parquet(table, snakemake.output.table)
log.info("node t=%.3f loss %.4f; line control t=%.4f loss %.4f (%s); short directions %s", t[k], target, m["t"],
         m["loss"], "matched" if m["matched"] else "NOT matched", table.groupby("start").short_count.first().tolist())
