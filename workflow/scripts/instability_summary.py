"""Instability: the barrier of the line between the two copies spawned at each epoch k (reads Parquet only)."""
import pandas as pd

from losslab import io, summaries
from losslab.device import setup_job

log = setup_job(snakemake.log[0], config=snakemake.config)
lines = pd.concat([io.read_parquet(p) for p in snakemake.input.tables], ignore_index=True)
ok = lines[lines["status"] == "ok"]
diverged = [{"k": k, "split": s, "metric": m, "barrier": float("nan"), "status": "diverged"}
            for k in sorted(set(lines.loc[lines["status"] != "ok", "k"])) for s in ("train", "test")
            for m in ("loss", "error")]
table = pd.concat([summaries.barriers(ok, ("k",), "alpha").assign(status="ok"), pd.DataFrame(diverged)],
                  ignore_index=True)
table = table.assign(**{c: lines[c].iloc[0] for c in ("dataset", "model", "n_train", "n_test")})
io.write_parquet(table, snakemake.output.table)
log.info("instability:\n%s", table[(table.split == "test") & (table.metric == "error")].to_string())
