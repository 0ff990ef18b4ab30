"""The run plan as a function: every bad configuration is refused with its key, every accepted
edge case becomes a plan. Plain unit tests: no Snakemake parse per case."""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import yaml

from conftest import REPO, TINY
from losslab.config import ConfigError, check_config_file, validate_config
from losslab.plan import build_plan


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else copy.deepcopy(v)
    return a


def config(*layers: dict, tiny: bool = True) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    if tiny:
        _merge(cfg, yaml.safe_load(TINY.read_text()))
    for layer in layers:
        _merge(cfg, layer)
    return cfg


def plan_of(*layers: dict, tiny: bool = True):
    return build_plan(validate_config(config(*layers, tiny=tiny)))


def refused(*layers: dict) -> str:
    with pytest.raises(ConfigError) as err:
        plan_of(*layers)
    msg = str(err.value)
    assert "Traceback" not in msg
    return msg


def rules(plan) -> Counter:
    return Counter(j.rule for j in plan.jobs.values())


MLP_BN = {"model": {"name": "mlp", "batchnorm": True, "options": {"hidden": 32}}}

# (layer, words that must all appear in the message): the dotted key, the value, what to do
BAD = {
    "conv-on-vectors": ({"dataset": {"name": "regression1d"}, "model": {"name": "simplecnn"}},
                        ["model.name = 'simplecnn'", "regression1d", "input shape (1,)", "mlp"]),
    "channels-too-deep": ({"model": {"options": {"channels": [8, 8, 8, 8]}}},
                          ["model.options", "[8, 8, 8, 8]", "digits", "(1, 8, 8)"]),
    "unknown-option": ({"model": {"name": "mlp", "options": {"depthh": 3}}}, ["unknown key model.options.depthh", "depth"]),
    "option-type": ({"model": {"name": "mlp", "options": {"hidden": "many"}}}, ["model.options.hidden = 'many'", "integer"]),
    "option-enum": ({"model": {"name": "mlp", "options": {"activation": "gelu"}}},
                    ["model.options.activation = 'gelu'", "relu, tanh"]),
    "resnet-blocks-zero": ({"model": {"name": "resnet20", "options": {"blocks": 0}}}, ["model.options.blocks = 0", ">= 1"]),
    "absurd-width": ({"model": {"width": 3000.0}}, ["model.name = 'simplecnn'", "parameters", "GiB",
                                                    "compute.memory_budget_mb"]),
    "absurd-sweep-width": ({"tunnels": {"sweep": {"width": [3000.0]}}}, ["tunnels.sweep.width[0] = 3000", "parameters"]),
    "non-integral-epochs": ({"endpoints": {"train": {"epochs": 4.5}}}, ["endpoints.train.epochs = 4.5", "integer"]),
    "empty-results-dir": ({"results_dir": ""}, ["results_dir = ''", "empty"]),
    "root-results-dir": ({"results_dir": "/"}, ["results_dir = '/'", "root"]),
    "dot-results-dir": ({"results_dir": "./"}, ["results_dir = './'", "working directory"]),
    "empty-data-dir": ({"dataset": {"data_dir": " "}}, ["dataset.data_dir", "empty"]),
    "yaml11-on": ({"planes": {"engine": {"first_layer": True}}}, ["planes.engine.first_layer = True", "quotes"]),
    "yaml11-off": ({"planes": {"engine": {"compile": False}}}, ["planes.engine.compile = False", "\"on\""]),
    "swa-unknown-setting": ({"swa": {"start_setting": "nope"}}, ["swa.start_setting = 'nope'", "known settings",
                                                                 "lr-0.003"]),
    "curves-unknown-setting": ({"curves": {"setting": "wide"}}, ["curves.setting = 'wide'", "endpoints.settings"]),
    "planes-unknown-setting": ({"planes": {"setting": "wide"}}, ["planes.setting = 'wide'"]),
    "connectors-unknown-setting": ({"connectors": {"setting": "wide"}}, ["connectors.setting = 'wide'"]),
    "self-pair": ({"curves": {"pairs": [[0, 0]]}}, ["curves.pairs[0] = [0, 0]", "itself"]),
    "duplicate-pair": ({"curves": {"pairs": [[0, 1], [0, 1]]}}, ["curves.pairs[1] = [0, 1]", "twice"]),
    "connector-d-too-big": ({"connectors": {"d": 10**6}}, ["connectors.d = 1000000", "parameters", "null"]),
    "lanczos-iters": ({"connectors": {"short_directions": {"iters": 3, "top_k": 8}}},
                      ["connectors.short_directions.iters = 3", "top_k = 8"]),
    "spectra-kind-not-trained": ({"spectra": {"kinds": ["chain"]}}, ["spectra.kinds = ['chain']", "curves.kinds"]),
    "spectra-min-steps": ({"spectra": {"min_steps": 5, "top_k": 8}}, ["spectra.min_steps = 5", "spectra.top_k = 8"]),
    "spectra-starts-one": ({"spectra": {"starts": 1}}, ["spectra.starts = 1", ">= 2"]),
    "centre-n": ({"connectors": {"mconnector": {"centre_n": [1, 5]}}}, ["connectors.mconnector.centre_n", "centre_seeds"]),
    "wedge-s": ({"wedge": {"s": 60}}, ["wedge.s = 60", "wedge.D = 60"]),
    "wedge-dims": ({"wedge": {"hyperplanes": {"dims": [2, 100]}}}, ["wedge.hyperplanes.dims [100]", "wedge.D = 60"]),
    "wedge-tunnel-d": ({"wedge": {"tunnel": {"d": 60}}}, ["wedge.tunnel.d = 60", "59"]),
    "relative-threshold": ({"tunnels": {"threshold_mode": "relative", "threshold": 0.5}},
                           ["tunnels.threshold = 0.5", "relative"]),
    "slice-seed": ({"tunnels": {"slices": {"enabled": True, "seed": 3}}}, ["tunnels.slices.seed = 3", "tunnels.seeds"]),
    "swa-one-snapshot": ({"swa": {"epochs": 3, "snapshot_every": 2}}, ["swa.epochs = 3", "swa.snapshot_every = 2"]),
    "swa-lr-labels": ({"swa": {"lrs": [0.1, 0.1000000001]}}, ["swa.lrs[1]", "swa.lrs[0]", "lr0.1"]),
    "sweep-labels": ({"tunnels": {"sweep": {"lr": [0.002, 0.0020000001]}}},
                     ["tunnels.sweep.lr[1]", "tunnels.sweep.lr[0]", "lr-0.002"]),
    "setting-twice": ({"endpoints": {"settings": {"default": {}, "lr-0.003": {"lr": 0.01}}}},
                      ["'lr-0.003' is defined twice", "endpoints.settings.lr-0.003", "tunnels.sweep.lr[1]"]),
    "tiles-over-resolution": ({"planes": {"resolution": 4, "tiles_per_side": 5}},
                              ["planes.tiles_per_side = 5", "planes.resolution = 4"]),
    "bn-last-batch-train": (_merge(copy.deepcopy(MLP_BN), {"endpoints": {"train": {"batch_size": 1347}}}),
                            ["endpoints.train.batch_size = 1347", "1348 training samples", "one sample"]),
    "bn-last-batch-setting": (_merge(copy.deepcopy(MLP_BN), {"endpoints": {"settings": {"b": {"batch_size": 449}}},
                                                             "curves": {"setting": "b"}}),
                              ["endpoints.settings.b.batch_size = 449"]),
    "bn-last-batch-sweep": (_merge(copy.deepcopy(MLP_BN), {"tunnels": {"sweep": {"batch_size": [64, 1347]}}}),
                            ["tunnels.sweep.batch_size[1] = 1347"]),
    "bn-last-batch-curves": (_merge(copy.deepcopy(MLP_BN), {"curves": {"batch_size": 449}}), ["curves.batch_size = 449"]),
    "bn-last-batch-swa": (_merge(copy.deepcopy(MLP_BN), {"swa": {"batch_size": 1347}}), ["swa.batch_size = 1347"]),
    "bn-recompute-batch": (_merge(copy.deepcopy(MLP_BN), {"evaluation": {"bn_size": 129, "bn_batch": 64}}),
                           ["evaluation.bn_size = 129", "evaluation.bn_batch = 64"]),
    "bn-connector-batch": (_merge(copy.deepcopy(MLP_BN), {"connectors": {"batch_size": 1}}), ["connectors.batch_size = 1"]),
    "bn-hessian-samples": (_merge(copy.deepcopy(MLP_BN), {"connectors": {"short_directions": {"samples": 1}}}),
                           ["connectors.short_directions.samples = 1"]),
    "missing-cifar": ({"dataset": {"name": "cifar10", "data_dir": "/nonexistent"}},
                      ["dataset.name = 'cifar10'", "/nonexistent", "dataset.download: true"]),
    "unknown-top-level": ({"curvez": {}}, ["unknown key curvez"]),
    "bn-batch-one": ({"evaluation": {"bn_batch": 1}}, ["evaluation.bn_batch = 1", ">= 2"]),
    "dropout-one": ({"model": {"dropout": 1.0}}, ["model.dropout = 1.0", "< 1"]),
    "cli-string-not-a-number": ({"endpoints": {"train": {"lr": "fast"}}}, ["endpoints.train.lr = 'fast'", "number"]),
    "seeds-negative": ({"endpoints": {"seeds": [0, -1]}}, ["endpoints.seeds[1] = -1", ">= 0"]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_configuration_is_refused_with_its_key(name):
    layer, words = BAD[name]
    msg = refused(layer)
    for w in words:
        assert w in msg, f"{name}: {w!r} not in:\n{msg}"


def test_at_least_forty_bad_configurations_are_covered():
    assert len(BAD) >= 40


# ---- accepted edge cases --------------------------------------------------------------------
def test_cli_strings_in_model_options_are_typed_per_model():
    """`--config 'model={name: resnet20, options: {skip: false}}'` arrives as strings."""
    plan = plan_of({"model": {"name": "resnet20", "batchnorm": "true", "options": {"skip": "false", "blocks": "1"}}})
    spec = plan.main_experiment.model_spec
    assert spec["options"] == {"skip": False, "blocks": 1} and spec["batchnorm"] is True
    plan = plan_of({"model": {"name": "mlp", "options": {"hidden": "32"}}})
    assert plan.main_experiment.model_spec["options"] == {"hidden": 32}
    assert plan.main_experiment.networks["default"]["n_params"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10


def test_integral_floats_become_integers():
    plan = plan_of({"curves": {"epochs": 3.0}, "endpoints": {"train": {"epochs": 4.0}}, "planes": {"resolution": 6.0}})
    assert plan.config["curves"]["epochs"] == 3 and isinstance(plan.config["curves"]["epochs"], int)
    assert plan.endpoint_params("digits", "simplecnn", "default")["train"]["epochs"] == 4


def test_results_dir_with_trailing_slash_is_normalised():
    plan = plan_of({"results_dir": "out//run/"})
    assert plan.res == "out/run"
    assert all(t.startswith("out/run/") for t in plan.targets)


def test_null_from_the_command_line_for_a_nullable_key():
    plan = plan_of({"tunnels": {"slices": {"enabled": True, "resolution": "null"}}, "connectors": {"d": "null"}})
    assert plan.config["tunnels"]["slices"]["resolution"] is None and plan.config["connectors"]["d"] is None
    slices = [d for (_, _, n), d in plan.stages["planes"].items() if n.startswith("tunnel-")]
    assert slices and all(d["resolution"] == plan.config["planes"]["resolution"] for d in slices)


def test_swa_may_start_from_a_sweep_setting():
    plan = plan_of({"swa": {"start_setting": "lr-0.003"}})
    starts = {r["start"] for r in plan.stages["swa"][plan.main].values()}
    assert starts == {"results/digits/simplecnn/endpoints/lr-0.003/seed0/model.pt"}
    assert ("train_endpoint", "digits", "simplecnn", "lr-0.003", 0) in plan.jobs


def test_regression_main_experiment_plans_one_plane_per_curve():
    plan = plan_of({"dataset": {"name": "regression1d"}, "model": {"name": "mlp"},
                    "connectors": {"enabled": False}, "tunnels": {"enabled": False}, "swa": {"enabled": False},
                    "align": {"enabled": False}, "ensembles": {"enabled": False},
                    "planes": {"endpoints": {"enabled": False}}})
    assert list(plan.experiments) == [("regression1d", "mlp")]
    names = sorted(n for (_, _, n) in plan.stages["planes"])
    assert names == ["curve-bezier1-default-seed0-seed1", "radial-seed0"]
    assert rules(plan)["plot_curve_functions"] == 1  # its own curve is drawn as functions


def test_a_switched_off_stage_plans_nothing():
    plan = plan_of({"curves": {"enabled": False}, "wedge": {"enabled": False}})
    r = rules(plan)
    assert not {"train_curve", "evaluate_curve", "curve_track", "wedge_tunnel", "plot_wedge"} & set(r)
    assert not any(n.startswith("curve-") for (_, _, n) in plan.stages["planes"])
    assert ("regression1d", "mlp") not in plan.experiments


def test_empty_endpoint_seeds_train_only_what_stages_need():
    plan = plan_of({"endpoints": {"seeds": []}, "curves": {"regression": {"enabled": False}}, "wedge": {"enabled": False},
                    "connectors": {"enabled": False}, "tunnels": {"enabled": False}, "swa": {"enabled": False},
                    "align": {"enabled": False}, "ensembles": {"enabled": False},
                    "planes": {"endpoints": {"enabled": False}, "random": {"enabled": False}}})
    trained = sorted(k[1:] for k in plan.jobs if k[0] == "train_endpoint")
    assert trained == [("digits", "simplecnn", "default", 0), ("digits", "simplecnn", "default", 1)]
    assert "endpoint_summary" not in rules(plan)


def test_same_setting_defined_twice_with_equal_values_is_one_setting():
    plan = plan_of({"endpoints": {"settings": {"default": {}, "lr-0.003": {"lr": 0.003}}}})
    s = plan.main_experiment.settings["lr-0.003"]
    assert s.overrides == {"lr": 0.003} and s.origin == "endpoints.settings.lr-0.003"


def test_every_job_output_is_a_target_and_no_two_jobs_share_an_output():
    plan = plan_of(tiny=False)
    outs = [o for j in plan.jobs.values() for v in j.outputs.values() for o in (v if isinstance(v, list) else [v])]
    assert len(outs) == len(set(outs))
    assert set(outs) == set(plan.targets)
    r = rules(plan)
    # replicates: 3 pairs x 2 kinds of curves (+ aligned and regression), 3 connectors, 3 SWA seeds (a job each)
    assert r["train_endpoint"] == 30 and r["plane_single"] == 19 and r["swa_run"] == 3 and r["train_curve"] == 9
    assert r["connector"] == 3 and r["animate_curve_training"] == 5  # planes for the first pair only


def test_duplicated_key_in_a_config_file_names_file_and_lines(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("curves:\n  epochs: 3\nplanes:\n  resolution: 5\ncurves:\n  bends: 2\n")
    with pytest.raises(ConfigError) as err:
        check_config_file(f)
    msg = str(err.value)
    assert str(f) in msg and "line 5" in msg and "'curves'" in msg and "line 1" in msg
    with pytest.raises(ConfigError, match="not valid YAML"):
        (tmp_path / "broken.yaml").write_text("curves: [1, 2\n")
        check_config_file(tmp_path / "broken.yaml")
    ok = tmp_path / "ok.yaml"
    ok.write_text("curves:\n  epochs: 3\n")
    assert check_config_file(ok) == {"curves": {"epochs": 3}}
    cfg = config()
    with pytest.raises(ConfigError, match="line 5"):
        validate_config(cfg, files=[f])


def test_spectra_are_planned_at_every_point_set_and_follow_switched_off_stages():
    plan = plan_of()
    r = rules(plan)
    assert (r["spectra_curve"], r["spectra_connector"], r["spectra_centres"], r["plot_spectra"]) == (1, 1, 1, 1)
    out = {j.rule: j.outputs for j in plan.jobs.values() if j.rule.startswith("spectra")}
    assert out["spectra_curve"]["counts"].endswith("spectra/curves/bezier1/default/seed0-seed1/counts.parquet")
    assert out["spectra_centres"]["density"].endswith("spectra/mconnectors/default/centre-seeds0-1-2/density.parquet")
    r = rules(plan_of({"connectors": {"enabled": False}}))
    assert r["spectra_curve"] == 1 and not (r["spectra_connector"] or r["spectra_centres"])
    r = rules(plan_of({"curves": {"enabled": False}}))
    assert r["spectra_connector"] == 1 and not (r["spectra_curve"] or r["plot_spectra"])
    assert not {"spectra_curve", "plot_spectra"} & set(rules(plan_of({"spectra": {"enabled": False}})))
    r = rules(plan_of({"spectra": {"at": ["centres"]}}))
    assert r["spectra_centres"] == 1 and not (r["spectra_curve"] or r["spectra_connector"])


def test_default_config_equals_the_schema_defaults():
    """config.yaml and the schema cannot drift: an empty config gets exactly config.yaml."""
    assert validate_config({}) == validate_config(config(tiny=False))


def test_network_facts_are_cached_and_reused(tmp_path, monkeypatch):
    cfg = validate_config(config())
    build_plan(copy.deepcopy(cfg), cache_dir=tmp_path)
    assert (tmp_path / "networks.json").exists()
    from losslab import models

    monkeypatch.setattr(models, "inspect_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("not cached")))
    plan = build_plan(copy.deepcopy(cfg), cache_dir=tmp_path)
    assert plan.main_experiment.networks["default"]["n_params"] == 14378


# ---- the researcher's own model, data and checkpoints ------------------------------------------
USER_STAGES_OFF = {"tunnels": {"enabled": False}, "swa": {"enabled": False}, "wedge": {"enabled": False},
                   "curves": {"regression": {"enabled": False}}, "align": {"width": {"enabled": False}},
                   "ensembles": {"enabled": False}}


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """A model file, a package, an .npz dataset and checkpoints in a working directory."""
    import numpy as np
    import torch

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def build(input_shape, num_outputs, hidden=8):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], hidden), nn.ReLU(),\n"
        "                         nn.Linear(hidden, num_outputs))\n"
        "def broken(input_shape, num_outputs):\n"
        "    raise RuntimeError('my factory cannot do this')\n"
        "def not_a_module(input_shape, num_outputs):\n"
        "    return 42\n"
        "def wrong_outputs(input_shape, num_outputs):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], num_outputs + 1))\n")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 2, 5)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    np.savez(tmp_path / "data.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    bad = x.copy()
    bad[3, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x_train=bad[:40], y_train=y[:40], x_test=bad[40:], y_test=y[40:])
    np.savez(tmp_path / "labels.npz", x_train=x[:40], y_train=y[:40] - 1, x_test=x[40:], y_test=y[40:])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    torch.save(torch.nn.DataParallel(net).state_dict(), tmp_path / "a.pt")
    torch.save({k: v for k, v in net.state_dict().items() if k != "3.bias"}, tmp_path / "short.pt")
    return tmp_path


USER = {"dataset": {"name": "file", "path": "data.npz"}, "model": {"name": "net.py:build"}, "connectors": {"d": None},
        **USER_STAGES_OFF}
USER_BAD = {
    "factory-raises": ({"model": {"name": "net.py:broken"}}, ["model.name = 'net.py:broken'", "my factory cannot do this"]),
    "factory-not-a-module": ({"model": {"name": "net.py:not_a_module"}}, ["returned int, not an nn.Module"]),
    "factory-wrong-outputs": ({"model": {"name": "net.py:wrong_outputs"}}, ["model.name = 'net.py:wrong_outputs'",
                                                                           "(2, 3)"]),
    "factory-missing-file": ({"model": {"name": "nowhere.py:build"}}, ["nowhere.py", "model.name"]),
    "factory-unknown-option": ({"model": {"options": {"depth": 3}}}, ["model.options", "depth"]),
    "user-model-width": ({"model": {"width": 2.0}}, ["model.width = 2.0", "built-in models only", "model.options"]),
    "user-model-setting-width": ({"endpoints": {"settings": {"default": {}, "wide": {"width": 2.0}}}},
                                 ["endpoints.settings.wide.width", "built-in models only"]),
    "user-model-sweep-width": ({"tunnels": {"enabled": True, "sweep": {"width": [0.5]}}},
                               ["tunnels.sweep.width = [0.5]", "tunnels.sweep.width: []"]),
    "data-missing": ({"dataset": {"path": "gone.npz"}}, ["dataset.path", "gone.npz"]),
    "data-nan": ({"dataset": {"path": "nan.npz"}}, ["nan.npz", "NaN"]),
    "data-labels": ({"dataset": {"path": "labels.npz"}}, ["labels.npz", "-1"]),
    "data-no-path": ({"dataset": {"path": None}}, ["dataset.path"]),
    "torchvision-unknown": ({"model": {"name": "torchvision:resnet999"}}, ["torchvision:resnet999", "resnet"]),
    "weights-not-torchvision": ({"model": {"weights": "a.pt"}}, ["model.weights", "torchvision"]),
    "external-missing": ({"endpoints": {"external": {"mine": {"paths": ["a.pt", "gone.pt"], "strip_prefix": "module."}}}},
                         ["endpoints.external.mine[1]", "gone.pt"]),
    "external-unstripped": ({"endpoints": {"external": {"mine": ["a.pt"]}}},
                            ["endpoints.external.mine[0]", "module."]),
    "external-missing-key": ({"endpoints": {"external": {"mine": ["short.pt"]}}},
                             ["endpoints.external.mine[0]", "3.bias"]),
    "external-seed-beyond": ({"endpoints": {"external": {"mine": {"paths": ["a.pt"], "strip_prefix": "module."}}},
                              "curves": {"setting": "mine"}}, ["curves.pairs[0]", "seed 1", "'mine'", "1 external"]),
    "external-prefix-absent": ({"endpoints": {"external": {"mine": {"paths": ["short.pt"], "strip_prefix": "model."}}}},
                               ["endpoints.external.mine[0]", "model."]),
    "label-collision": ({"dataset": {"label": "regression1d"}, "model": {"label": "mlp"},
                         "curves": {"regression": {"enabled": True}}}, ["curves.regression", "regression1d/mlp"]),
}


@pytest.mark.parametrize("name", sorted(USER_BAD))
def test_user_inputs_refused_with_key_or_file(name, user_files):
    layer, words = USER_BAD[name]
    msg = refused(USER, layer)
    for w in words:
        assert w in msg, f"{name}: {w!r} not in:\n{msg}"


def test_user_inputs_become_a_plan(user_files):
    plan = plan_of(USER, {"endpoints": {"seeds": [0, 1, 2], "external": {"mine": {"paths": ["a.pt", "a.pt"],
                                                                                   "strip_prefix": "module."}}},
                          "planes": {"setting": "mine", "endpoints": {"enabled": False}},
                          "connectors": {"mconnector": {"centre_seeds": [0, 1, 2], "centre_n": [1, 2]}}})
    assert plan.main == ("data", "net-build")
    exp = plan.main_experiment
    assert exp.info == {"in_shape": (2, 5), "num_outputs": 3, "task": "classification", "n_train": 40, "n_test": 20}
    assert exp.networks["default"]["n_params"] == 10 * 8 + 8 + 8 * 3 + 3
    assert exp.settings["mine"].resolved == ["a.pt", "a.pt"]
    jobs = Counter(k[0] for k in plan.jobs)
    assert jobs["import_endpoint"] == 2 and jobs["train_endpoint"] == 3
    assert ("plane_basis", "data", "net-build", "radial-seed0") in plan.jobs



def test_default_seed_lists_follow_an_external_setting(user_files):
    """Seed lists left at their (schema) default are trimmed to the seeds of a 3-file external
    setting; a list the user wrote is checked as written."""
    three = {"endpoints": {"external": {"mine": {"paths": ["a.pt"] * 3, "strip_prefix": "module."}}}}
    defaults = {"connectors": {"setting": "mine", "pairs": [[0, 1], [0, 2], [1, 2]],
                               "mconnector": {"centre_seeds": [0, 1, 2, 3], "centre_n": [1, 2, 3, 4]}}}
    plan = plan_of(USER, three, defaults)
    mc = plan.config["connectors"]["mconnector"]
    assert mc["centre_seeds"] == [0, 1, 2] and mc["centre_n"] == [1, 2, 3]
    assert len(plan.stages["connectors"][plan.main]["connectors"]) == 3
    written = refused(USER, three, defaults, {"connectors": {"mconnector": {"centre_seeds": [0, 1, 2, 5]}}})
    assert "connectors.mconnector.centre_seeds" in written and "seed 5" in written


def test_empty_sweep_is_refused_before_any_job():
    msg = refused({"tunnels": {"sweep": {p: [] for p in ("lr", "batch_size", "l2", "dropout", "width")}}})
    assert "tunnels.sweep" in msg and "tunnels.enabled: false" in msg


def test_connector_pairs_are_replicates():
    plan = plan_of({"connectors": {"pairs": [[0, 1], [1, 2]]}})
    cons = plan.stages["connectors"][plan.main]["connectors"]
    assert sorted((c["a"], c["b"]) for c in cons.values()) == [(0, 1), (1, 2)]
    assert rules(plan)["connector"] == 2 and rules(plan)["connector_short_directions"] == 2
    assert "connectors.pairs[1]" in refused({"connectors": {"pairs": [[0, 1], [1, 0]]}})
    assert "connectors.pairs[0]" in refused({"connectors": {"pairs": [[2, 2]]}})
