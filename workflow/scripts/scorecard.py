"""The reproduction scorecard from the stages' summary tables (reads Parquet only)."""
import pandas as pd

from losslab import io, scorecard
from losslab.device import setup_job

log = setup_job(snakemake.log[0], config=snakemake.config)
names = ("curves_summary", "curves_ensemble", "hyperplanes", "cosines", "short", "centre", "tunnels", "swa")
tables = {}
for name in names:
    if name in snakemake.input.keys():
        files = snakemake.input[name]
        files = [files] if isinstance(files, str) else list(files)
        tables[name] = pd.concat([io.read_parquet(f) for f in files], ignore_index=True)
card = scorecard.score(tables)
io.write_parquet(card, snakemake.output.table)
with io.atomic_path(snakemake.output.page) as tmp:
    tmp.write_text(scorecard.html(card))
log.info("scorecard:\n%s", card[["claim", "verdict", "measured"]].to_string())
