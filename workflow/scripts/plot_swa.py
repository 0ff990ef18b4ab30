"""SWA figures (accuracy vs lr per schedule; loss along snapshot segments), from Parquet only."""
from losslab import io, sweepfigs
from losslab.device import setup_job

setup_job(snakemake.log[0])
out = snakemake.output
sweepfigs.plot_swa_accuracy(io.read_parquet(snakemake.input.summary), out.accuracy, out.accuracy_pdf)
sweepfigs.plot_swa_lines(io.read_parquet(snakemake.input.lines), out.lines, out.lines_pdf)
