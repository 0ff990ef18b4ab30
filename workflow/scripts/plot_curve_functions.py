"""Predictive functions along the regression curve over the data (blog Figure 7, left)."""
from losslab import io
from losslab.figures import curves as curve_figures
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
curve_figures.plot_functions(io.read_parquet(snakemake.input.predictions), io.read_parquet(snakemake.input.data),
                             io.read_parquet(snakemake.input.along), snakemake.output.png, snakemake.output.pdf)
