"""Render one plane from its gathered Parquet tables (never recomputes)."""
from losslab import io
from losslab.device import setup_job
from losslab.figures.planes import plot_plane

setup_job(snakemake.log[0], config=snakemake.config)
r = snakemake.params.render
track = io.read_parquet(snakemake.input.track) if "track" in snakemake.input.keys() else None
plot_plane(io.read_parquet(snakemake.input.grid), io.read_parquet(snakemake.input.points), track,
           snakemake.output.png, snakemake.output.pdf, levels=r["levels"], t_marks=r["t_marks"],
           title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.model}: {snakemake.wildcards.plane}")
