"""Loss and error along the line: naive, aligned, aligned + REPAIR, and the curves (from Parquet only)."""
import pandas as pd

from losslab import io
from losslab.device import setup_job
from losslab.figures import align as figs

setup_job(snakemake.log[0], config=snakemake.config)
lines = pd.concat([io.read_parquet(p) for p in snakemake.input.lines], ignore_index=True)
along = pd.concat([io.read_parquet(p) for p in snakemake.input.along], ignore_index=True) if snakemake.input.along else None
figs.plot_lines(lines, along, snakemake.output.png, snakemake.output.pdf)
