"""Training curves of the endpoints, from their Parquet tables only."""
import pandas as pd

from losslab import io
from losslab.figures.endpoints import plot_training
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
hist = pd.concat([io.read_parquet(p) for p in snakemake.input.metrics], ignore_index=True)
plot_training(hist, snakemake.output.png, snakemake.output.pdf)
