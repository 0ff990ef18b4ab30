"""Train one endpoint (thin wrapper around losslab.train)."""
from pathlib import Path

from losslab import data, io
from losslab.device import get_device, setup_job
from losslab.train import TrainSettings, train_endpoint

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
spec = snakemake.params.spec
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
ds = data.load_dataset(**spec["dataset"])
ev = data.eval_from_config(ds, spec, device)
state = Path(snakemake.output.ckpt).with_name("resume.pt")
log.info("training %s/%s setting=%s seed=%s on %s", wc.dataset, wc.model, wc.setting, wc.seed, device)
res = train_endpoint(spec["model"], TrainSettings.from_dict(spec["train"]), ds, ev, int(wc.seed), device,
                     state_path=state, checkpoint_every=snakemake.config["endpoints"]["checkpoint_every"])
res.point.meta.update(setting=wc.setting)
hist = res.history.assign(dataset=wc.dataset, model=wc.model, setting=wc.setting, seed=int(wc.seed),
                          **{k: v for k, v in spec["train"].items()},
                          width=spec["model"]["width"], dropout=spec["model"]["dropout"], **ev.sizes)
io.write_parquet(hist, snakemake.output.metrics)
io.save_point(res.point, snakemake.output.ckpt)
state.unlink(missing_ok=True)
log.info("done: status=%s", res.status)
