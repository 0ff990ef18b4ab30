"""Join the tiles of one plane into grid.parquet and check that every grid point is there once."""
import pandas as pd

from losslab import io
from losslab.device import setup_job

log = setup_job(snakemake.log[0], config=snakemake.config)
G = snakemake.params.resolution
df = pd.concat([io.read_parquet(p) for p in snakemake.input.tiles], ignore_index=True)
df = df[df["resolution"] == G]
n = df.groupby("split").size()
dup = df.duplicated(["split", "ix", "iy"]).sum()
if dup or (n != G * G).any():
    raise io.ArtifactError(f"tiles of {snakemake.output.grid} do not cover the {G}x{G} grid exactly "
                           f"(points per split: {n.to_dict()}, duplicates: {dup}); delete the tiles and rerun")
df = df.sort_values(["split", "iy", "ix"]).reset_index(drop=True)
io.write_parquet(df, snakemake.output.grid)
log.info("gathered %d tiles into %d rows", len(snakemake.input.tiles), len(df))
