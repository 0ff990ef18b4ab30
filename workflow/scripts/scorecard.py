"""The reproduction scorecard from the stages' replicate tables (reads Parquet only)."""
import pandas as pd

from losslab import io, scorecard
from losslab.device import setup_job

log = setup_job(snakemake.log[0], config=snakemake.config)
runs = {label: {} for label in snakemake.params.experiments}  # experiment -> table name -> DataFrame
for key, spec in snakemake.params.ids.items():
    files = snakemake.input[key]
    files = [files] if isinstance(files, str) else list(files)
    runs[spec["experiment"]][spec["table"]] = pd.concat(
        [io.read_parquet(f).assign(source_file=f, **cols) for f, cols in zip(files, spec["cols"])], ignore_index=True)
card = scorecard.score_runs(runs)
io.write_parquet(card, snakemake.output.table)
with io.atomic_path(snakemake.output.page) as tmp:
    tmp.write_text(scorecard.html(card))
with io.atomic_path(snakemake.output.landing) as tmp:
    tmp.write_text(scorecard.landing_rst(card, snakemake.params.intro))
log.info("scorecard:\n%s", card[["experiment", "claim", "effect", "ci_low", "ci_high", "n_replicates", "verdict"]].to_string())
