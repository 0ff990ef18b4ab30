"""Barrier before and after alignment against the width multiplier (from Parquet only)."""
from losslab import io
from losslab.device import setup_job
from losslab.figures import align as figs

setup_job(snakemake.log[0], config=snakemake.config)
figs.plot_width(io.read_parquet(snakemake.input.table), snakemake.output.png, snakemake.output.pdf)
