"""Gather the per-curve summaries (barriers, means) into one table."""
import pandas as pd

from losslab import io
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
io.write_parquet(pd.concat([io.read_parquet(p) for p in snakemake.input.summaries], ignore_index=True),
                 snakemake.output.table)
