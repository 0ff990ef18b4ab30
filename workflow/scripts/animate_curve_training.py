"""Curve training in its fixed plane: one frame per saved epoch (GIF, and MP4 with ffmpeg)."""
from losslab import io
from losslab.device import setup_job
from losslab.figures.planes import animate_curve

setup_job(snakemake.log[0], config=snakemake.config)
r = snakemake.params.render
animate_curve(io.read_parquet(snakemake.input.grid), io.read_parquet(snakemake.input.points),
              io.read_parquet(snakemake.input.track), snakemake.output.gif,
              snakemake.output.get("mp4"), levels=r["levels"], fps=r["fps"],
              title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.model}: {snakemake.wildcards.plane}")
