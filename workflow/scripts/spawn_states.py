"""Train the parent run of the instability experiment and save its full state at each spawn epoch k
(the endpoint training loop and its resumable state, stopped after the last k)."""
from losslab import data
from losslab.device import get_device, setup_job
from losslab.train import TrainSettings, train_endpoint

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.config)
p = snakemake.params
device = get_device(snakemake.config["compute"]["device"])
ds = data.load_dataset(**p.spec["dataset"])
ev = data.eval_from_config(ds, p.spec, device)
states = dict(zip(p.ks, snakemake.output.states))
res = train_endpoint(p.spec["model"], TrainSettings.from_dict(p.spec["train"]), ds, ev, int(p.seed), device,
                     stop_after=max(1, max(p.ks)), save_states_at=states)
log.info("parent run saved states at epochs %s (status %s)", p.ks, res.status)
