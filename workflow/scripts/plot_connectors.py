"""Connector and m-connector figures, from the Parquet tables only."""
from losslab import io
from losslab.figures import structure as sf
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
i, o = snakemake.input, snakemake.output
names = ("connector_path", "connector_cosines", "connector_agreement", "connector_short_directions",
         "mconnector_triangle", "mconnector_centre")
pdf = dict(zip(names, o.pdfs))
path = io.read_parquet(i.path)
sf.plot_connector_path(path, o.connector_path, pdf["connector_path"])
sf.plot_cosines(io.read_parquet(i.cosines), o.connector_cosines, pdf["connector_cosines"])
sf.plot_agreement(path, o.connector_agreement, pdf["connector_agreement"])
sf.plot_short(io.read_parquet(i.short), o.connector_short_directions, pdf["connector_short_directions"])
sf.plot_triangle(io.read_parquet(i.surface), o.mconnector_triangle, pdf["mconnector_triangle"])
sf.plot_centre(io.read_parquet(i.centre), o.mconnector_centre, pdf["mconnector_centre"])
