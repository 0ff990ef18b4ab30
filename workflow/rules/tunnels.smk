# Stage: hyper-parameter sweeps and radial tunnel width (paper section 4.4, Figure 5).
# Library: src/losslab/tunnels.py. Every value of every list in `tunnels.sweep` becomes an
# endpoint setting named <param>-<value> (register_setting), trained by the endpoint rule
# (workflow/rules/endpoints.smk) for each seed in `tunnels.seeds`. A value equal to the base
# configuration reuses the `default` endpoint setting. One tunnel job per setting probes all
# its seeds: results/{dataset}/{model}/tunnels/{setting}/{widths,profile}.parquet.

TUNNEL_KEYS = ("directions", "normalization", "r_max", "threshold_mode", "threshold", "profile_points",
               "bisection_steps", "direction_seed")


def value_label(v):
    """Path-safe text of a number: 0.003 -> '0.003', 1e6 -> '1e06' (no '+')."""
    return f"{v:g}".replace("e+", "e")


def _base_value(param):
    if param in ("width", "dropout"):
        return config["model"][param]
    return config["endpoints"]["train"][param]


def _sweep_settings():
    """[(param, value, setting)] for every swept value; registers the endpoint settings."""
    rows = []
    base_ok = config["endpoints"]["settings"].get("default") == {}
    for param, values in config["tunnels"]["sweep"].items():
        for v in values:
            if param == "batch_size":
                v = int(v)
            if base_ok and float(v) == float(_base_value(param)):
                name = "default"
            else:
                name = f"{param}-{value_label(v)}"
                register_setting(name, {param: v})
            rows.append({"param": param, "value": float(v), "setting": name})
    if config["tunnels"]["threshold_mode"] == "relative" and config["tunnels"]["threshold"] <= 1:
        raise ValueError("tunnels.threshold must be > 1 when tunnels.threshold_mode is 'relative' "
                         f"(a multiple of the optimum's loss); got {config['tunnels']['threshold']}")
    return rows


TUNNEL_SWEEP = _sweep_settings()
TUNNEL_SETTINGS = sorted({r["setting"] for r in TUNNEL_SWEEP})

# 2-D slices (paper Fig. 2): the planes stage's engine evaluates a random plane through one optimum
# of every swept setting, with unit directions so both axes are weight-space distances.
_sl = config["tunnels"]["slices"]
if _sl["enabled"]:
    if _sl["seed"] not in config["tunnels"]["seeds"]:
        raise ValueError(f"tunnels.slices.seed {_sl['seed']} is not in tunnels.seeds {config['tunnels']['seeds']}")
    for _setting in TUNNEL_SETTINGS:
        _ckpt = endpoint_path(_setting, _sl["seed"])
        _plane = f"tunnel-{_setting}-seed{_sl['seed']}"
        register_plane(_plane, "random", {f"seed {_sl['seed']}": _ckpt}, _ckpt, resolution=_sl["resolution"],
                       random={"direction_seed": config["tunnels"]["direction_seed"] + _sl["seed"],
                               "normalization": "unit", "extent": _sl["extent"]})


rule tunnel_widths:
    input:
        code=lib("data", "models", "flat", "tunnels"),
        ckpts=lambda wc: [endpoint_path(wc.setting, s, dataset=wc.dataset, model=wc.model) for s in config["tunnels"]["seeds"]],
    output:
        widths=f"{RES}/{{dataset}}/{{model}}/tunnels/{{setting}}/widths.parquet",
        profile=f"{RES}/{{dataset}}/{{model}}/tunnels/{{setting}}/profile.parquet",
    params:
        tunnels=lambda wc: {k: config["tunnels"][k] for k in TUNNEL_KEYS},
        seeds=config["tunnels"]["seeds"],
        spec=lambda wc: {k: v for k, v in endpoint_params(wc).items() if k in ("dataset", "model", "evaluation")},
    log:
        "logs/{dataset}/{model}/tunnels/{setting}.log",
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(runtime=30, mem_mb=4000),
    script:
        "../scripts/tunnel_widths.py"


rule tunnel_summary:
    input:
        code=lib("tunnels"),
        widths=expand(f"{BASE}/tunnels/{{setting}}/widths.parquet", setting=TUNNEL_SETTINGS),
        profiles=expand(f"{BASE}/tunnels/{{setting}}/profile.parquet", setting=TUNNEL_SETTINGS),
    output:
        widths=f"{BASE}/tunnels/widths.parquet",
        profiles=f"{BASE}/tunnels/profiles.parquet",
        summary=f"{BASE}/tunnels/summary.parquet",
    params:
        sweep=TUNNEL_SWEEP,
    log:
        f"logs/{DS}/{MODEL}/tunnels/summary.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/tunnel_summary.py"


rule plot_tunnels:
    input:
        code=lib("figures", "sweepfigs"),
        profiles=rules.tunnel_summary.output.profiles,
        summary=rules.tunnel_summary.output.summary,
    output:
        profiles=report(f"{BASE}/figures/tunnel_profiles.png", caption="../report/tunnel_profiles.rst", category="Tunnels"),
        profiles_pdf=f"{BASE}/figures/tunnel_profiles.pdf",
        widths=report(f"{BASE}/figures/tunnel_widths.png", caption="../report/tunnel_widths.rst", category="Tunnels"),
        widths_pdf=f"{BASE}/figures/tunnel_widths.pdf",
    log:
        f"logs/{DS}/{MODEL}/figures/tunnels.log",
    resources:
        **cpu_resources(),
    script:
        "../scripts/plot_tunnels.py"


ALL_TARGETS += [rules.tunnel_summary.output.summary, rules.plot_tunnels.output.profiles, rules.plot_tunnels.output.widths]
