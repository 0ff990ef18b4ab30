"""Two copies spawned from the parent's state at epoch k (different data order from k on), trained to
the end of the same schedule; the straight line between them."""
import math

import pandas as pd
import torch

from losslab import align, data, io
from losslab.device import get_device, setup_job
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.train import TrainSettings, train_endpoint

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
ds = data.load_dataset(**p.spec["dataset"])
ev = data.eval_from_config(ds, p.spec, device)
settings = TrainSettings.from_dict(p.spec["train"])
copies = []
for c, path in enumerate(snakemake.output.copies):
    res = train_endpoint(p.spec["model"], settings, ds, ev, int(p.seed), device, spawn_from=snakemake.input.state, copy=c)
    copies.append(res.point)
    io.save_point(res.point, path)
    log.info("copy %d from epoch %s: status %s", c, wc.k, res.status)
fm = FlatModel(build_model(p.spec["model"], ds.in_shape, ds.num_outputs).to(device))
status = "ok" if all(pt.status == "ok" for pt in copies) else "diverged"
if status == "ok":
    alphas = torch.linspace(0, 1, p.points).tolist()
    rows = align.line_rows(fm, copies[0].flat.to(device), copies[1].flat.to(device), alphas, ev, ds.task,
                           alignment="none", method="naive")
else:
    rows = [{"alignment": "none", "method": "naive", "alpha": math.nan, "split": s, "loss": math.nan,
             "accuracy": math.nan, "error": math.nan} for s in ("train", "test")]
io.write_parquet(pd.DataFrame(rows).assign(k=int(wc.k), status=status, dataset=wc.dataset, model=wc.model,
                                           n_train=ev.train_x.shape[0], n_test=ev.test_x.shape[0]),
                 snakemake.output.line)
