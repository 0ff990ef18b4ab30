# Stage: the wedge toy landscape (Fort & Jastrzebski, section 3). Library: src/losslab/wedge.py
# (surrogate loss, experiments) + src/losslab/connectors.py (the connector algorithm shared with
# real networks). No network and no dataset: outputs go to results/toy_wedge/.
WEDGE = config["wedge"]
TOY = f"{RES}/toy_wedge"

if WEDGE["s"] >= WEDGE["D"]:
    raise ValueError(f"wedge.s = {WEDGE['s']} must be smaller than wedge.D = {WEDGE['D']} "
                     "(s >= D leaves no long direction)")
_too_big = [d for d in WEDGE["hyperplanes"]["dims"] if d > WEDGE["D"]]
if _too_big:
    raise ValueError(f"wedge.hyperplanes.dims {_too_big} exceed the parameter count wedge.D = {WEDGE['D']}")
if WEDGE["tunnel"]["d"] is not None and WEDGE["tunnel"]["d"] > WEDGE["D"] - 1:
    raise ValueError(f"wedge.tunnel.d = {WEDGE['tunnel']['d']} exceeds the {WEDGE['D'] - 1} directions "
                     f"orthogonal to the line in wedge.D = {WEDGE['D']} dimensions")

_WEDGE_COMMON = {k: WEDGE[k] for k in ("D", "s", "rotate", "init_mean", "init_std", "seed", "optimizer", "lr", "steps")}


rule wedge_hyperplanes:
    input:
        code=lib("wedge", "connectors"),
    output:
        table=f"{TOY}/hyperplanes.parquet",
    params:
        common={k: v for k, v in _WEDGE_COMMON.items() if k not in ("lr", "steps")},  # the planes have their own
        exp=WEDGE["hyperplanes"],
    log:
        "logs/toy_wedge/hyperplanes.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/wedge_toy.py"


rule wedge_tunnel:
    input:
        code=lib("wedge", "connectors"),
    output:
        path=f"{TOY}/tunnel_path.parquet",
        cosines=f"{TOY}/tunnel_cosines.parquet",
        summary=f"{TOY}/tunnel_summary.parquet",
    params:
        common=_WEDGE_COMMON,
        exp=WEDGE["tunnel"],
    log:
        "logs/toy_wedge/tunnel.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/wedge_toy.py"


rule wedge_radial:
    input:
        code=lib("wedge", "connectors"),
    output:
        table=f"{TOY}/radial.parquet",
    params:
        common=_WEDGE_COMMON,
        exp=WEDGE["radial"],
    log:
        "logs/toy_wedge/radial.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/wedge_toy.py"


rule plot_wedge:
    input:
        code=lib("figures", "structure_figures"),
        hyperplanes=rules.wedge_hyperplanes.output.table,
        path=rules.wedge_tunnel.output.path,
        cosines=rules.wedge_tunnel.output.cosines,
        radial=rules.wedge_radial.output.table,
    output:
        hyperplanes=report(f"{TOY}/figures/hyperplanes.png", caption="../report/wedge_hyperplanes.rst", category="Toy wedge model"),
        tunnel=report(f"{TOY}/figures/tunnel.png", caption="../report/wedge_tunnel.rst", category="Toy wedge model"),
        radial=report(f"{TOY}/figures/radial.png", caption="../report/wedge_radial.rst", category="Toy wedge model"),
        pdfs=[f"{TOY}/figures/{n}.pdf" for n in ("hyperplanes", "tunnel", "radial")],
    log:
        "logs/toy_wedge/figures.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_wedge.py"


ALL_TARGETS += [rules.plot_wedge.output.hyperplanes, rules.plot_wedge.output.tunnel, rules.plot_wedge.output.radial,
                rules.wedge_tunnel.output.summary]
