"""Predictive functions f(x; phi(t)) of the 1-D regression curve on a dense x grid."""
import pandas as pd
import torch

from losslab import curves, data, io, job
from losslab.device import get_device, setup_job

setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
spec = snakemake.params.spec
device = get_device(snakemake.config["compute"]["device"])
cv = curves.load_curve(snakemake.input.ckpt)
ctx = job.context(spec, device)
ds, ev, fm = ctx.ds, ctx.ev, ctx.fm
fn = snakemake.params.functions
lo, hi = fn["x_range"]
x = torch.linspace(lo, hi, fn["grid"], device=device)[:, None]
pred = curves.predictions(fm, cv["kind"], cv["control"].to(device), fn["ts"], x, ev.bn_x)
if spec["dataset"]["name"] == "regression1d":  # the synthetic problem's noiseless target is known
    pred["target"] = data.regression_function(torch.as_tensor(pred["x"].to_numpy())).numpy()
ids = dict(dataset=snakemake.wildcards.dataset, model=snakemake.wildcards.model, kind=cv["kind"],
           bends=cv["control"].shape[0] - 2, **spec["ids"])
io.write_parquet(pred.assign(**ids), snakemake.output.predictions)
pts = pd.concat([pd.DataFrame({"split": s, "x": xs.reshape(-1).cpu().numpy(), "y": ys.reshape(-1).cpu().numpy()})
                 for s, (xs, ys) in {"train": (ds.train_x, ds.train_y), "test": (ds.test_x, ds.test_y)}.items()],
                ignore_index=True)
io.write_parquet(pts.assign(dataset=snakemake.wildcards.dataset), snakemake.output.data)
