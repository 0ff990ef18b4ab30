# The reproduction scorecard: for each claim of the two seed works, the effect size with its 95 %
# interval over replicates and holds / does not hold / inconclusive / not run. Library:
# src/losslab/scorecard.py (criteria fixed in the code); plan: src/losslab/plan/scorecard.py.
from losslab.plan import scorecard as SC


rule scorecard:
    input:
        unpack(lambda wc: SC.inputs(PLAN)),
        code=lib("scorecard"),
    params:
        ids=lambda wc: SC.file_ids(PLAN),
        experiments=lambda wc: SC.experiments(PLAN),
        intro=open(os.path.join(workflow.basedir, "workflow", "report", "workflow.rst")).read(),
    output:
        table=out(SC.OUT["table"]),
        page=report(out(SC.OUT["page"]), caption="../../src/losslab/figures/captions/scorecard.rst",
                    category="Scorecard"),
        landing=out(SC.OUT["landing"]),
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
