# losslab: the geometry of neural-network loss landscapes as a Snakemake workflow.
#
#   snakemake --cores all                      # the embedded default (digits, CPU, minutes)
#   snakemake --cores all --configfile presets/cifar10.yaml
#   snakemake --report results/report.html
#
# Stages live in workflow/rules/<stage>.smk (one library module in src/losslab each).
import os
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))
# Script jobs (and jobs on cluster nodes) import the library from this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)

from losslab.config import ConfigError, validate_config

configfile: os.path.join(workflow.basedir, "config.yaml")

try:
    validate_config(config)
except ConfigError as _err:
    sys.exit(f"losslab: {_err}")

report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"

for _smk in sorted((Path(workflow.basedir) / "workflow" / "rules").glob("*.smk")):
    if _smk.name != "common.smk":
        include: str(_smk)


rule all:
    default_target: True
    input:
        lambda wc: ALL_TARGETS,
