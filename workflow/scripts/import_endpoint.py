"""Import one already trained network (endpoints.external) as an endpoint checkpoint, evaluated on
the fixed subsets like a trained one (thin wrapper around losslab.checkpoints)."""
import pandas as pd

from losslab import checkpoints, data, io
from losslab.device import get_device, setup_job
from losslab.flat import FlatModel, evaluate
from losslab.models import build_model

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
spec, ext = snakemake.params.spec, snakemake.params.external
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
ds = data.load_dataset(**spec["dataset"])
ev = data.eval_from_config(ds, spec, device)
module = build_model(spec["model"], ds.in_shape, ds.num_outputs)
point = checkpoints.load_external(snakemake.input.ckpt, module, ext["strip_prefix"], model_spec=spec["model"],
                                  key=ext["key"], setting=wc.setting, seed=int(wc.seed), dataset=wc.dataset)
fm = FlatModel(module.to(device))
buffers = {k: v.to(device) for k, v in point.buffers.items()} or None
rows = []
for split in ("train", "test"):
    x, y = ev.split(split)
    m = evaluate(fm, point.flat.to(device), x, y, ds.task, buffers)
    rows.append({"epoch": 0, "split": split, "loss": m["loss"], "accuracy": m["accuracy"]})
    log.info("%s: %s loss %.4f accuracy %.4f", snakemake.input.ckpt, split, m["loss"], m["accuracy"])
hist = pd.DataFrame(rows).assign(status="ok", dataset=wc.dataset, model=wc.model, setting=wc.setting,
                                 seed=int(wc.seed), source=point.meta["source"], sha256=point.meta["sha256"],
                                 n_train=ev.train_x.shape[0], n_test=ev.test_x.shape[0])
io.write_parquet(hist, snakemake.output.metrics)
io.save_point(point, snakemake.output.ckpt)
