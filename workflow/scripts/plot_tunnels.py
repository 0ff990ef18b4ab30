"""Tunnel figures (loss vs r per setting; width vs each hyper-parameter), from Parquet only."""
from losslab import io, sweepfigs
from losslab.device import setup_job

setup_job(snakemake.log[0])
out = snakemake.output
sweepfigs.plot_tunnel_profiles(io.read_parquet(snakemake.input.profiles), io.read_parquet(snakemake.input.summary),
                               out.profiles, out.profiles_pdf)
sweepfigs.plot_tunnel_widths(io.read_parquet(snakemake.input.summary), out.widths, out.widths_pdf)
