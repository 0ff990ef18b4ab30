"""Evaluate a curve and the straight line along t; barriers; ensembles (losslab.curves)."""
import torch

from losslab import curves, data, io
from losslab.device import get_device, setup_job
from losslab.flat import FlatModel
from losslab.models import build_model

log = setup_job(snakemake.log[0], snakemake.threads)
spec = snakemake.params.spec
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
w1, w2 = curves.load_endpoints(snakemake.input.w1, snakemake.input.w2)
cv = curves.load_curve(snakemake.input.ckpt)
control = cv["control"]
if not (torch.equal(control[0], w1.flat) and torch.equal(control[-1], w2.flat)):
    raise io.ArtifactError(f"curve {snakemake.input.ckpt} does not end at the endpoints {snakemake.input.w1}, {snakemake.input.w2}")
ds = data.load_dataset(**{k: spec["dataset"][k] for k in ("name", "data_dir", "download", "split_seed", "test_fraction", "augment")})
ev = data.eval_data(ds, spec["evaluation"]["train_size"], spec["evaluation"]["test_size"],
                    spec["evaluation"]["bn_size"], spec["evaluation"]["seed"], device)
fm = FlatModel(build_model(spec["model"], ds.in_shape, ds.num_outputs).to(device))
ts = torch.linspace(0, 1, snakemake.params.points, dtype=control.dtype)
paths = {"curve": curves.point(cv["kind"], control.to(device), ts.to(device)),
         "line": curves.line_points(w1.flat.to(device), w2.flat.to(device), ts.to(device))}
along, ens = curves.evaluate_paths(fm, paths, ts, ev, ds.task, spec["curve"]["l2"], batch_size=spec["evaluation"]["batch_size"])
summary = curves.summarize(along, ("loss", "nll", "error") if ds.task == "classification" else ("loss", "nll"))
ids = dict(dataset=wc.dataset, model=wc.model, **spec["ids"], kind=cv["kind"], bends=int(spec["curve"]["bends"]),
           curve_status=cv["meta"].get("status", "ok"))
io.write_parquet(along.assign(**ids), snakemake.output.along)
io.write_parquet(ens.assign(**ids), snakemake.output.ensemble)
io.write_parquet(summary.assign(**ids), snakemake.output.summary)
for _, r in summary[summary.metric.isin(["loss", "error"])].iterrows():
    log.info("%s %s %s barrier %.4f", r.path, r.split, r.metric, r.barrier)
