# Helpers shared by the rule files (output paths from the plan's templates, library inputs,
# resources). The rule files read the run plan, PLAN, built in the Snakefile, and register nothing.
from losslab.config import library_closure, module_file

RES = PLAN.res


class _Keep(dict):
    def __missing__(self, key):
        return f"{{{key}}}"


def out(template, **fill):
    """A plan path template under the results folder; fields not filled stay wildcards."""
    return f"{RES}/{template.format_map(_Keep(fill))}"


def lib(*modules):
    """Library modules a rule's script imports, as inputs, with everything they import in turn
    (read from the sources), so editing any module reruns exactly the rules that depend on it."""
    return [str(module_file(m)) for m in library_closure(("__init__", "io", "device") + modules)]


def xcfg(*path, pick=None):
    """A param read from the config of the job's experiment ({dataset}/{model} wildcards): with
    `experiments:`, each entry's overrides on the top level (losslab.plan.experiments)."""

    def get(wc):
        node = PLAN.config_of(wc.dataset, wc.model)
        for p in path:
            node = node[p]
        return {k: node[k] for k in pick} if pick else node

    return get


def gpu_resources(runtime=60, mem_mb=4000):
    """Resources of a GPU-tagged rule. compute.gpus_per_job: 0 makes it CPU-only."""
    res = {"runtime": runtime, "mem_mb": mem_mb}
    if config["compute"]["gpus_per_job"] > 0:
        res["gpu"] = config["compute"]["gpus_per_job"]
    return res


def cpu_resources(runtime=15, mem_mb=2000):
    return {"runtime": runtime, "mem_mb": mem_mb}


# Every wildcard, here and only here: a global constraint applies only to what is defined after
# it, so constraints spread over the rule files would depend on their include order.
wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    model="[A-Za-z0-9_.-]+",
    setting="[A-Za-z0-9_.-]+",
    seed="[0-9]+",
    curve="[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
    plane="[A-Za-z0-9_.+-]+",
    i="[0-9]+",
    j="[0-9]+",
    connector="[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
    mconnector="[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
    run="(constant|cyclic)/lr[0-9.e-]+/seed[0-9]+",
    pair="[A-Za-z0-9_.-]+/seed[0-9]+-seed[0-9]+",
    method="weight_matching|activation_matching",
    spawn="[A-Za-z0-9_.-]+/seed[0-9]+",
    k="[0-9]+",
