"""Short directions at the optimised centre of the simplex of n optima, for each configured n;
the centres are saved for the spectra stage."""
import pandas as pd
import torch

from losslab import connectors, hessian, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
o, sd = p.opt, p.short
device = get_device(snakemake.config["compute"]["device"])
ds, fm, X, pts, ev, x, y = connectors.load_hessian_inputs(snakemake.input.optima, p.dataset, p.evaluation, sd, device)
train_loss = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task, o["batch_size"], o["seed"])
full = connectors.NetworkLoss(fm, ds.train_x, ds.train_y, ds.task)
frames, centres = [], []
for n in p.centre_n:
    if n == 1:
        centre, status, flat = X[0], "ok", X[0]
    else:
        r = connectors.simplex_centre(train_loss, X[:n], o["d"], o["steps"], o["lr"], o["optimizer"], o["seed"],
                                      o["memory_budget_mb"])
        centre, status, flat = r.point, r.status, X[:n].mean(0)
    centres.append(centre.detach())
    rows = hessian.short_direction_rows(fm, centre[None], x, y, ds.task, sd, ev.bn_x)
    seeds = "-".join(str(q.meta.get("seed")) for q in pts[:n])  # the optima, for the Bezier reference
    frames.append(rows.drop(columns="index").assign(n=n, status=status, centre_train_loss=float(full(centre).detach()),
                                                    flat_centre_train_loss=float(full(flat).detach()), seeds=seeds))
    log.info("n=%d: centre loss %.4f (flat %.4f), short directions %s", n, frames[-1].centre_train_loss.iloc[0],
             frames[-1].flat_centre_train_loss.iloc[0], rows.groupby("start").short_count.first().tolist())
io.write_parquet(pd.concat(frames, ignore_index=True).assign(dataset=ds.name, samples=x.shape[0],
                                                             n_train=ds.train_x.shape[0], n_test=0),
                 snakemake.output.table)  # centre losses on the whole training set, Hessians on `samples`
io.save_tensors({"points": torch.stack(centres).cpu(), "n": torch.tensor(list(p.centre_n))}, snakemake.output.centres)
