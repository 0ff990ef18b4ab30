"""Gather the final epoch of every endpoint into one table."""
import pandas as pd

from losslab import io
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
hist = pd.concat([io.read_parquet(p) for p in snakemake.input.metrics], ignore_index=True)
last = hist[hist["split"].isin(["train", "test"])].sort_values("epoch").groupby(["setting", "seed", "split"]).tail(1)
io.write_parquet(last.reset_index(drop=True), snakemake.output.table)
