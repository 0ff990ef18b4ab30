# The reproduction scorecard: for each claim of the two seed works that the run covers, the
# measured numbers, the statement and holds / does not hold / not run. Library:
# src/losslab/scorecard.py (criteria fixed in the code); plan: src/losslab/plan/scorecard.py.
from losslab.plan import scorecard as SC


rule scorecard:
    input:
        unpack(lambda wc: SC.inputs(PLAN)),
        code=lib("scorecard"),
    output:
        table=out(SC.OUT["table"]),
        page=report(out(SC.OUT["page"]), caption="../../src/losslab/figures/captions/scorecard.rst",
                    category="Scorecard"),
    log:
        "logs/scorecard.log",
    benchmark:
        "logs/benchmarks/scorecard/scorecard.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/scorecard.py"
