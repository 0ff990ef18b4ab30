"""Gather tunnel widths of every sweep value into long tables and one summary per value."""
import pandas as pd

from losslab import io, tunnels
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
sweep = pd.DataFrame(snakemake.params.sweep)  # param, value, setting
widths = pd.concat([io.read_parquet(p) for p in snakemake.input.widths], ignore_index=True)
profiles = pd.concat([io.read_parquet(p) for p in snakemake.input.profiles], ignore_index=True)
widths = sweep.merge(widths, on="setting", how="left")
profiles = sweep.merge(profiles, on="setting", how="inner")
io.write_parquet(widths, snakemake.output.widths)
io.write_parquet(profiles, snakemake.output.profiles)
io.write_parquet(tunnels.summarise_widths(widths), snakemake.output.summary)
