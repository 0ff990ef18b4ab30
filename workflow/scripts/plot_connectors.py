"""Connector and m-connector figures, from the Parquet tables only."""
from losslab import io, structure_figures as sf
from losslab.device import setup_job

setup_job(snakemake.log[0])
i, o = snakemake.input, snakemake.output
pdf = dict(zip(("path", "cosines", "agreement", "short", "triangle", "centre"), o.pdfs))
path = io.read_parquet(i.path)
sf.plot_connector_path(path, o.path, pdf["path"])
sf.plot_cosines(io.read_parquet(i.cosines), o.cosines, pdf["cosines"])
sf.plot_agreement(path, o.agreement, pdf["agreement"])
sf.plot_short(io.read_parquet(i.short), o.short, pdf["short"])
sf.plot_triangle(io.read_parquet(i.surface), o.triangle, pdf["triangle"])
sf.plot_centre(io.read_parquet(i.centre), o.centre, pdf["centre"])
