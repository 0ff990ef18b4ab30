"""Concatenate the input tables of one kind into one long table (a gather; reads Parquet only)."""
import pandas as pd

from losslab import io
from losslab.device import setup_job

log = setup_job(snakemake.log[0], config=snakemake.config)
table = pd.concat([io.read_parquet(p) for p in snakemake.input.tables], ignore_index=True)
io.write_parquet(table, snakemake.output.table)
log.info("gathered %d tables into %d rows", len(snakemake.input.tables), len(table))
