"""Project the final curve and its saved epochs onto the final curve's plane."""
from losslab import io
from losslab.device import setup_job
from losslab.planes import curve_track, load_plane

log = setup_job(snakemake.log[0], config=snakemake.config)
plane = load_plane(snakemake.input.plane)
track = curve_track(plane, snakemake.input.curve, snakemake.input.epochs, snakemake.params.t_marks,
                    max_frames=snakemake.params.max_frames)
track["plane"] = snakemake.wildcards.plane
io.write_parquet(track, snakemake.output.track)
log.info("max off-plane residual: %.3g", track["residual"].max())
