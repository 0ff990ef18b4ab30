# Stage: the wedge toy landscape (Fort & Jastrzebski, section 3). Library: src/losslab/wedge.py
# (surrogate loss, experiments) + src/losslab/connectors.py (the connector algorithm shared with
# real networks). No network and no dataset: outputs go to results/toy_wedge/.
from losslab.plan import wedge as WG

WEDGE = config["wedge"]
_WEDGE_COMMON = {k: WEDGE[k] for k in ("D", "s", "rotate", "init_mean", "init_std", "seed", "optimizer", "lr", "steps")}


rule wedge_hyperplanes:
    input:
        code=lib("wedge", "connectors"),
    output:
        table=out(WG.OUT["hyperplanes"]),
    params:
        common={k: v for k, v in _WEDGE_COMMON.items() if k not in ("lr", "steps")},  # the planes have their own
        exp=WEDGE["hyperplanes"],
    log:
        "logs/toy_wedge/hyperplanes.log",
    benchmark:
        "logs/benchmarks/wedge_hyperplanes/toy_wedge/hyperplanes.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/wedge_toy.py"


rule wedge_tunnel:
    input:
        code=lib("wedge", "connectors"),
    output:
        path=out(WG.OUT["tunnel_path"]),
        cosines=out(WG.OUT["tunnel_cosines"]),
        summary=out(WG.OUT["tunnel_summary"]),
    params:
        common=_WEDGE_COMMON,
        exp=WEDGE["tunnel"],
    log:
        "logs/toy_wedge/tunnel.log",
    benchmark:
        "logs/benchmarks/wedge_tunnel/toy_wedge/tunnel.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/wedge_toy.py"


rule wedge_radial:
    input:
        code=lib("wedge", "connectors"),
    output:
        table=out(WG.OUT["radial"]),
    params:
        common=_WEDGE_COMMON,
        exp=WEDGE["radial"],
    log:
        "logs/toy_wedge/radial.log",
    benchmark:
        "logs/benchmarks/wedge_radial/toy_wedge/radial.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/wedge_toy.py"


rule plot_wedge:
    input:
        code=lib("figures.structure"),
        hyperplanes=rules.wedge_hyperplanes.output.table,
        path=rules.wedge_tunnel.output.path,
        cosines=rules.wedge_tunnel.output.cosines,
        radial=rules.wedge_radial.output.table,
    output:
        hyperplanes=report(out(WG.OUT["fig"], name="hyperplanes", ext="png"), caption="../../src/losslab/figures/captions/wedge_hyperplanes.rst",
                           category="Toy wedge model"),
        tunnel=report(out(WG.OUT["fig"], name="tunnel", ext="png"), caption="../../src/losslab/figures/captions/wedge_tunnel.rst",
                      category="Toy wedge model"),
        radial=report(out(WG.OUT["fig"], name="radial", ext="png"), caption="../../src/losslab/figures/captions/wedge_radial.rst",
                      category="Toy wedge model"),
        pdfs=[out(WG.OUT["fig"], name=n, ext="pdf") for n in WG.FIGURES],
    log:
        "logs/toy_wedge/figures.log",
    benchmark:
        "logs/benchmarks/plot_wedge/toy_wedge/figures.tsv"
    resources:
        **cpu_resources(),
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_wedge.py"
