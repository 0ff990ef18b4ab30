"""Matched-loss controls of the m-connector centres' short directions: for each centre of n >= 2
optima, the point of the straight line from the first optimum toward the second whose train loss
equals the centre's, with its short directions counted by the same Lanczos settings."""
import pandas as pd

from losslab import connectors, hessian, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
sd = p.short
device = get_device(snakemake.config["compute"]["device"])
ds, fm, X, pts, ev, x, y = connectors.load_hessian_inputs(snakemake.input.optima, p.dataset, p.evaluation, sd, device)
saved = io.load_tensors(snakemake.input.centres, device)
full = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task)  # the centre table's loss: whole training set
frames = []
for n, centre in zip(saved["n"].tolist(), saved["points"]):
    if n < 2:  # the optimum itself: its own control
        continue
    target = float(full(centre).detach())
    m = connectors.matched_loss_point(full, X[0], X[1], target, rtol=connectors.MATCH_RTOL)
    rows = hessian.short_direction_rows(fm, m["point"][None], x, y, ds.task, sd, ev.bn_x).drop(columns="index")
    frames.append(rows.assign(n=n, centre_train_loss=target, t_line=m["t"], control_train_loss=m["loss"],
                              matched=m["matched"], rtol=connectors.MATCH_RTOL))
    log.info("n=%d: centre loss %.4f; line control t=%.4f loss %.4f (%s); short directions %s", n, target, m["t"],
             m["loss"], "matched" if m["matched"] else "NOT matched",
             frames[-1].groupby("start").short_count.first().tolist())
table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["n", "start", "short_count"])
io.write_parquet(table.assign(dataset=ds.name, samples=x.shape[0], n_train=ds.train_x.shape[0], n_test=0),
                 snakemake.output.table)
