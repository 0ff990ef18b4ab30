"""Spectra figures, from the Parquet tables only (losslab.figures.spectra)."""
import pandas as pd

from losslab import io
from losslab.device import setup_job
from losslab.figures import spectra as fs

setup_job(snakemake.log[0], config=snakemake.config)
i, o = snakemake.input, snakemake.output
pdf = dict(zip(("spectra_density", "spectra_top_trace", "spectra_short"), o.pdfs))


def table(name):
    files = dict(i.items()).get(name) or []
    files = [files] if isinstance(files, str) else list(files)
    return pd.concat([io.read_parquet(f) for f in files], ignore_index=True) if len(files) else None


counts = table("curve_counts")
connector, centres = table("connector_counts"), table("centres_counts")
fs.plot_density(table("curve_density"), o.spectra_density, pdf["spectra_density"])
fs.plot_top_trace(counts, o.spectra_top_trace, pdf["spectra_top_trace"], connector)
fs.plot_short(counts, o.spectra_short, pdf["spectra_short"], connector, centres)
