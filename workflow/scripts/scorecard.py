"""The reproduction scorecard from the stages' replicate tables (reads Parquet only)."""
import pandas as pd

from losslab import io, scorecard
from losslab.device import setup_job

log = setup_job(snakemake.log[0], config=snakemake.config)
tables = {}
for name in scorecard.TABLES:
    if name in snakemake.input.keys():
        files = snakemake.input[name]
        files = [files] if isinstance(files, str) else list(files)
        ids = snakemake.params.ids[name]
        tables[name] = pd.concat([io.read_parquet(f).assign(source_file=f, **cols) for f, cols in zip(files, ids)],
                                 ignore_index=True)
card = scorecard.score(tables)
io.write_parquet(card, snakemake.output.table)
with io.atomic_path(snakemake.output.page) as tmp:
    tmp.write_text(scorecard.html(card))
with io.atomic_path(snakemake.output.landing) as tmp:
    tmp.write_text(scorecard.landing_rst(card, snakemake.params.intro))
log.info("scorecard:\n%s", card[["claim", "effect", "ci_low", "ci_high", "n_replicates", "verdict"]].to_string())
