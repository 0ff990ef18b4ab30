"""Toy wedge figures, from the Parquet tables only."""
from losslab import io
from losslab.figures import structure as sf
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
i, o = snakemake.input, snakemake.output
pdfs = dict(zip(("hyperplanes", "tunnel", "radial"), o.pdfs))
sf.plot_hyperplanes(io.read_parquet(i.hyperplanes), o.hyperplanes, pdfs["hyperplanes"])
sf.plot_tunnel(io.read_parquet(i.path), io.read_parquet(i.cosines), o.tunnel, pdfs["tunnel"])
sf.plot_radial(io.read_parquet(i.radial), o.radial, pdfs["radial"])
