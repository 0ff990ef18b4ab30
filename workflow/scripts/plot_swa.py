"""SWA figures (accuracy vs lr per schedule; loss along snapshot segments), from Parquet only."""
from losslab import io
from losslab.figures import sweeps as sweepfigs
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
out = snakemake.output
pdf = dict(zip(("swa_accuracy", "swa_lines"), out.pdfs))
sweepfigs.plot_swa_accuracy(io.read_parquet(snakemake.input.summary), out.swa_accuracy, pdf["swa_accuracy"])
sweepfigs.plot_swa_lines(io.read_parquet(snakemake.input.lines), out.swa_lines, pdf["swa_lines"])
