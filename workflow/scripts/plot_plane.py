"""Render one plane from its gathered Parquet tables (never recomputes): the static figure (PNG, PDF),
the interactive 3-D surface (HTML) and the files for ParaView (.vts grid, .vtp points and curves)."""
from losslab import io
from losslab.device import setup_job
from losslab.export import write_grid_vts, write_overlay_vtp
from losslab.figures.interactive import write_plane_html
from losslab.figures.planes import plot_plane

setup_job(snakemake.log[0], config=snakemake.config)
r = snakemake.params.render
grid, points = io.read_parquet(snakemake.input.grid), io.read_parquet(snakemake.input.points)
track = io.read_parquet(snakemake.input.track) if "track" in snakemake.input.keys() else None
title = f"{snakemake.wildcards.dataset} / {snakemake.wildcards.model}: {snakemake.wildcards.plane}"
plot_plane(grid, points, track, snakemake.output.png, snakemake.output.pdf, levels=r["levels"], t_marks=r["t_marks"],
           title=title)
write_plane_html(grid, points, track, snakemake.output.html, title=title)
write_grid_vts(grid, snakemake.output.vts)
write_overlay_vtp(points, track, snakemake.output.vtp, grid)
