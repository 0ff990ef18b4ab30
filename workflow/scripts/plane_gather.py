"""Join the tiles of one plane into grid.parquet and check that every grid point is there once."""
from losslab import io
from losslab.device import setup_job
from losslab.summaries import gather_tiles

log = setup_job(snakemake.log[0], config=snakemake.config)
df = gather_tiles([io.read_parquet(p) for p in snakemake.input.tiles], snakemake.params.resolution, snakemake.output.grid)
io.write_parquet(df, snakemake.output.grid)
log.info("gathered %d tiles into %d rows", len(snakemake.input.tiles), len(df))
