# losslab: the geometry of neural-network loss landscapes as a Snakemake workflow.
#
#   snakemake --cores all                      # the embedded default (digits, CPU, minutes)
#   snakemake --cores all --configfile presets/cifar10.yaml
#   snakemake --report results/report.html
#
# The Snakefile does three things in order: validate the config against the schema, build the
# run plan (src/losslab/plan: every experiment, setting, curve, plane, sweep and job, with every
# cross-section check), then include the rule files, which only read the plan. Stages live in
# workflow/rules/<stage>.smk (one library module in src/losslab each).
import os
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))
# Script jobs (and jobs on cluster nodes) import the library from this checkout, and resolve
# relative paths of user files against the working directory, then the workflow folder.
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p),
                  LOSSLAB_WORKFLOW_DIR=str(workflow.basedir))

from losslab.config import ConfigError, validate_config
from losslab.plan import build_plan
from losslab.scheduling import drop_default_rate_limit

configfile: os.path.join(workflow.basedir, "config.yaml")

try:
    validate_config(config, files=workflow.configfiles)
    PLAN = build_plan(config, cache_dir=os.path.join(".snakemake", "losslab-cache"))
except ConfigError as _err:
    sys.exit(f"losslab: {_err}")

# The report's landing page: the scorecard's verdicts once a run has written them (the scorecard
# job renders workflow/report/workflow.rst with them), the plain description before.
_LANDING = os.path.abspath(os.path.join(PLAN.res, "report_landing.rst"))
report: _LANDING if os.path.exists(_LANDING) else "workflow/report/workflow.rst"

# snakemake's default job rate limit (100/1s) re-arms a timer per scheduler pass; on runs of
# hundreds of jobs its scheduler then takes about half a core from the jobs (losslab/scheduling.py).
onstart:
    drop_default_rate_limit(workflow)

include: "workflow/rules/common.smk"
include: "workflow/rules/endpoints.smk"
include: "workflow/rules/curves.smk"
include: "workflow/rules/planes.smk"
include: "workflow/rules/wedge.smk"
include: "workflow/rules/connectors.smk"
include: "workflow/rules/tunnels.smk"
include: "workflow/rules/swa.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/ensembles.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/scorecard.smk"


rule all:
    default_target: True
    input:
        PLAN.targets,
