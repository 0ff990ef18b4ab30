"""Project the final curve and every saved curve epoch onto the final curve's plane."""
from losslab import io
from losslab.device import setup_job
from losslab.planes import curve_track, load_plane

log = setup_job(snakemake.log[0])
plane = load_plane(snakemake.input.plane)
track = curve_track(plane, snakemake.input.curve, list(snakemake.input.epochs), snakemake.params.t_marks)
track["plane"] = snakemake.wildcards.plane
io.write_parquet(track, snakemake.output.track)
log.info("max off-plane residual: %.3g", track["residual"].max())
