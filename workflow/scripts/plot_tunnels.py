"""Tunnel figures (loss vs r per setting; width vs each hyper-parameter), from Parquet only."""
from losslab import io
from losslab.figures import sweeps as sweepfigs
from losslab.device import setup_job

setup_job(snakemake.log[0], config=snakemake.config)
out = snakemake.output
pdf = dict(zip(("tunnel_profiles", "tunnel_widths"), out.pdfs))
sweepfigs.plot_tunnel_profiles(io.read_parquet(snakemake.input.profiles), io.read_parquet(snakemake.input.summary),
                               out.tunnel_profiles, pdf["tunnel_profiles"])
sweepfigs.plot_tunnel_widths(io.read_parquet(snakemake.input.summary), out.tunnel_widths, pdf["tunnel_widths"])
