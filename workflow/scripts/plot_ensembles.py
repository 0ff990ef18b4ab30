"""Ensemble accuracy / NLL and diversity against the training budget, every method (from Parquet only)."""
from losslab import io
from losslab.device import setup_job
from losslab.figures import ensembles as figs

setup_job(snakemake.log[0], config=snakemake.config)
table = io.read_parquet(snakemake.input.table)
pdf = dict(zip(("budget", "diversity"), snakemake.output.pdfs))
figs.plot_budget(table, snakemake.output.budget, pdf["budget"])
figs.plot_diversity(table, snakemake.output.diversity, pdf["diversity"])
