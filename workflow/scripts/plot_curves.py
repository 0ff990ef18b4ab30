"""Loss/error along t and the ensemble figure, from Parquet only."""
import pandas as pd

from losslab import io
from losslab.figures import curves as curve_figures
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
along = pd.concat([io.read_parquet(p) for p in snakemake.input.along], ignore_index=True)
ens = pd.concat([io.read_parquet(p) for p in snakemake.input.ensemble], ignore_index=True)
curve_figures.plot_along(along, snakemake.output.along, snakemake.output.along_pdf)
curve_figures.plot_ensemble(ens, snakemake.output.ensemble, snakemake.output.ensemble_pdf)
