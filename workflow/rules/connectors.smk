# Stage: connectors, m-connectors and short directions on real networks (Fort & Jastrzebski,
# sections 4.2-4.3). Library: src/losslab/connectors.py (algorithms over any loss on flat
# vectors) + src/losslab/hessian.py (Lanczos short-direction counts). Optima are the endpoint
# checkpoints of the endpoint stage (the endpoint rule trains whatever seed is asked for here).
CON = config["connectors"]
_MC = CON["mconnector"]
_CSET = CON["setting"]
if _CSET not in config["endpoints"]["settings"]:
    raise ValueError(f"connectors.setting = {_CSET!r} is not an endpoint setting; "
                     f"known: {sorted(config['endpoints']['settings'])}")
if max(_MC["centre_n"]) > len(_MC["centre_seeds"]):
    raise ValueError(f"connectors.mconnector.centre_n asks for {max(_MC['centre_n'])} optima but "
                     f"connectors.mconnector.centre_seeds lists only {len(_MC['centre_seeds'])}")
if CON["short_directions"]["iters"] < CON["short_directions"]["top_k"]:
    raise ValueError(f"connectors.short_directions.iters = {CON['short_directions']['iters']} must be at least "
                     f"connectors.short_directions.top_k = {CON['short_directions']['top_k']}")

_CA, _CB = CON["seeds"]
CON_DIR = f"{BASE}/connectors/{_CSET}/seeds{_CA}-{_CB}"
MCON_DIR = f"{BASE}/mconnectors/{_CSET}/seeds{'-'.join(map(str, _MC['seeds']))}"
CENTRE_DIR = f"{BASE}/mconnectors/{_CSET}/centre-seeds{'-'.join(map(str, _MC['centre_seeds']))}"
# what the optimisation of connector / m-connector nodes depends on
_CON_OPT = {k: CON[k] for k in ("d", "subspace", "optimizer", "lr", "steps", "batch_size", "seed")}
_CON_OPT["memory_budget_mb"] = config["compute"]["memory_budget_mb"]  # picks dense vs block-wise subspaces


rule connector:
    input:
        code=lib("data", "models", "flat", "connectors"),
        optima=[endpoint_path(_CSET, _CA), endpoint_path(_CSET, _CB)],
    output:
        nodes=f"{CON_DIR}/nodes.pt",
        table=f"{CON_DIR}/nodes.parquet",
    params:
        dataset=config["dataset"],
        opt=_CON_OPT,
        segments=CON["segments"],
    log:
        f"logs/{DS}/{MODEL}/connectors/{_CSET}/seeds{_CA}-{_CB}/connector.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/connector.py"


rule connector_path:
    input:
        code=lib("data", "models", "flat", "connectors"),
        nodes=rules.connector.output.nodes,
        optima=rules.connector.input.optima,
    output:
        path=f"{CON_DIR}/path.parquet",
        cosines=f"{CON_DIR}/cosines.parquet",
    params:
        dataset=config["dataset"],
        evaluation=config["evaluation"],
        eval_points=CON["eval_points"],
    log:
        f"logs/{DS}/{MODEL}/connectors/{_CSET}/seeds{_CA}-{_CB}/path.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/connector_path.py"


rule connector_short_directions:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        nodes=rules.connector.output.nodes,
        optima=rules.connector.input.optima,
    output:
        table=f"{CON_DIR}/short_directions.parquet",
    params:
        dataset=config["dataset"],
        evaluation=config["evaluation"],
        short=CON["short_directions"],
    log:
        f"logs/{DS}/{MODEL}/connectors/{_CSET}/seeds{_CA}-{_CB}/short_directions.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/connector_short.py"


rule mconnector:
    input:
        code=lib("data", "models", "flat", "connectors"),
        optima=[endpoint_path(_CSET, s) for s in _MC["seeds"]],
    output:
        nodes=f"{MCON_DIR}/nodes.pt",
        table=f"{MCON_DIR}/nodes.parquet",
    params:
        dataset=config["dataset"],
        opt=_CON_OPT,
        resolution=_MC["resolution"],
    log:
        f"logs/{DS}/{MODEL}/mconnectors/{_CSET}/triangle.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/mconnector.py"


rule mconnector_surface:
    input:
        code=lib("data", "models", "flat", "connectors"),
        nodes=rules.mconnector.output.nodes,
        optima=rules.mconnector.input.optima,
    output:
        table=f"{MCON_DIR}/surface.parquet",
    params:
        dataset=config["dataset"],
        evaluation=config["evaluation"],
        eval_resolution=_MC["eval_resolution"],
    log:
        f"logs/{DS}/{MODEL}/mconnectors/{_CSET}/surface.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/mconnector_surface.py"


rule mconnector_centre:
    input:
        code=lib("data", "models", "flat", "connectors", "hessian"),
        optima=[endpoint_path(_CSET, s) for s in _MC["centre_seeds"]],
    output:
        table=f"{CENTRE_DIR}/centre.parquet",
    params:
        dataset=config["dataset"],
        evaluation=config["evaluation"],
        opt=_CON_OPT,
        short=CON["short_directions"],
        centre_n=_MC["centre_n"],
    log:
        f"logs/{DS}/{MODEL}/mconnectors/{_CSET}/centre.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=60, mem_mb=4000),
    script:
        "../scripts/mconnector_centre.py"


_CFIG = f"{BASE}/figures/connectors"

rule plot_connectors:
    input:
        code=lib("figures", "structure_figures"),
        path=rules.connector_path.output.path,
        cosines=rules.connector_path.output.cosines,
        short=rules.connector_short_directions.output.table,
        surface=rules.mconnector_surface.output.table,
        centre=rules.mconnector_centre.output.table,
    output:
        path=report(f"{_CFIG}/connector_path.png", caption="../report/connector_path.rst", category="Connectors"),
        cosines=report(f"{_CFIG}/connector_cosines.png", caption="../report/connector_cosines.rst", category="Connectors"),
        agreement=report(f"{_CFIG}/connector_agreement.png", caption="../report/connector_agreement.rst", category="Connectors"),
        short=report(f"{_CFIG}/connector_short_directions.png", caption="../report/connector_short.rst", category="Connectors"),
        triangle=report(f"{_CFIG}/mconnector_triangle.png", caption="../report/mconnector_triangle.rst", category="Connectors"),
        centre=report(f"{_CFIG}/mconnector_centre.png", caption="../report/mconnector_centre.rst", category="Connectors"),
        pdfs=[f"{_CFIG}/{n}.pdf" for n in ("connector_path", "connector_cosines", "connector_agreement",
                                           "connector_short_directions", "mconnector_triangle", "mconnector_centre")],
    log:
        f"logs/{DS}/{MODEL}/figures/connectors.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_connectors.py"


ALL_TARGETS += [rules.plot_connectors.output.path, rules.plot_connectors.output.short,
                rules.plot_connectors.output.triangle, rules.plot_connectors.output.centre,
                rules.connector.output.table, rules.mconnector.output.table]
