"""Fit one curve between two endpoints (thin wrapper around losslab.curves)."""
from pathlib import Path

from losslab import curves, data, io
from losslab.device import get_device, setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
spec = snakemake.params.spec
cs, ids = spec["curve"], spec["ids"]
wc = snakemake.wildcards
device = get_device(snakemake.config["compute"]["device"])
kind, bends = cs["kind"], int(cs["bends"])
curves.check_bends(bends)
w1, w2 = curves.load_endpoints(snakemake.input.w1, snakemake.input.w2)  # clear errors before any work
ds = data.load_dataset(**spec["dataset"])
ev = data.eval_from_config(ds, spec, device)
settings = curves.CurveSettings.from_dict(cs)
state = Path(snakemake.output.ckpt).with_name("resume.pt")
log.info("training %s%d curve %s/%s setting=%s seeds %s-%s on %s", kind, bends, wc.dataset, wc.model,
         ids["setting"], ids["seed_a"], ids["seed_b"], device)
res = curves.train_curve(spec["model"], settings, ds, ev, w1, w2, kind, bends, cs["seed"], device,
                         state_path=state, checkpoint_every=snakemake.config["curves"]["checkpoint_every"])
meta = {**res.meta, **ids, "model": wc.model}
curves.save_curve_epochs(kind, res.snapshots, meta, snakemake.output.epochs)
hist = res.history.assign(dataset=wc.dataset, model=wc.model, **ids, kind=kind, bends=bends,
                          **{k: v for k, v in cs.items() if k not in ("seed", "kind", "bends")})
io.write_parquet(hist, snakemake.output.log_table)
curves.save_curve(kind, res.control, {**meta, "epoch": settings.epochs}, snakemake.output.ckpt)
state.unlink(missing_ok=True)
log.info("done: status=%s", res.status)
