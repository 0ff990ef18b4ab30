"""Several experiments in one run (`experiments:`), MNIST-1D generated locally, and the claims
matrix: plan refusals naming the entry and the key, shared jobs planned once, each job reading its
own experiment's config, and one tiny two-experiment run end to end."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, snakemake
from losslab import scorecard as sc
from losslab.config import ConfigError
from test_plan import config, plan_of, refused, rules

DIGITS_CNN = {"dataset": "digits", "model": "simplecnn"}
MNIST1D = {"dataset": {"name": "mnist1d", "mnist1d": {"num_samples": 300}}, "model": "cnn1d"}
LIGHT = {"planes": {"enabled": False}, "align": {"enabled": False}, "ensembles": {"enabled": False},
         "spectra": {"enabled": False}, "tunnels": {"enabled": False}, "swa": {"enabled": False}}


def exps(*entries, **layer) -> dict:
    return {"experiments": list(entries), **LIGHT, **layer}


# ---- the plan ---------------------------------------------------------------------------------

def test_two_experiments_plan_each_stage_and_share_the_toy_and_regression_jobs():
    plan = plan_of(exps(DIGITS_CNN, MNIST1D))
    assert plan.runs == [("digits", "simplecnn"), ("mnist1d", "cnn1d")]
    one = plan_of(LIGHT)
    per_run = {"train_curve", "connector", "mconnector", "endpoint_summary"}
    for rule in per_run:
        assert any(j.rule == rule and k[1:3] == ("mnist1d", "cnn1d") for k, j in plan.jobs.items()), rule
    # the toy wedge, the regression experiment and the scorecard: once, as in a single run
    for rule in ("wedge_hyperplanes", "curve_predictions", "scorecard"):
        assert rules(plan)[rule] == rules(one)[rule] == 1, rule
    # endpoints: the regression experiment's are shared, each run trains its own
    reg = [k for k in plan.endpoints if k[:2] == ("regression1d", "mlp")]
    assert sorted(reg) == sorted(k for k in one.endpoints if k[:2] == ("regression1d", "mlp"))


def test_each_experiment_keeps_its_own_overrides_and_the_single_run_is_unchanged():
    plan = plan_of(exps(DIGITS_CNN, {**MNIST1D, "overrides": {"connectors": {"segments": 3},
                                                                  "endpoints": {"train": {"lr": 0.003}}}}))
    assert plan.config_of("digits", "simplecnn")["connectors"]["segments"] == 4  # tiny.yaml
    assert plan.config_of("mnist1d", "cnn1d")["connectors"]["segments"] == 3
    assert plan.endpoint_params("mnist1d", "cnn1d", "default")["train"]["lr"] == 0.003
    assert plan.endpoint_params("digits", "simplecnn", "default")["train"]["lr"] == 0.001
    assert plan.experiment("mnist1d", "cnn1d").info["n_train"] == 240  # 300 samples, 80 % train
    single = plan_of(LIGHT)
    assert single.runs == [single.main] and single.config_of(*single.main) is single.config


@pytest.mark.parametrize("entry, layer, words", [
    ({**MNIST1D, "overrides": {"wedge": {"D": 50}}}, {},
     ["experiments[1] (mnist1d/cnn1d)", "overrides.wedge", "top level"]),
    ({**MNIST1D, "overrides": {"swa": {"lrs": [0.01]}}}, {},
     ["experiments[1]", "overrides.swa.lrs", "output files"]),
    ({**MNIST1D, "overrides": {"endpoints": {"train": {"epochs": 0}}}}, {},
     ["experiments[1] (mnist1d/cnn1d)", "endpoints.train.epochs = 0", ">= 1"]),
    ({**MNIST1D, "overrides": {"endpoints": {"train": {"epoch": 3}}}}, {},
     ["experiments[1] (mnist1d/cnn1d)", "unknown key endpoints.train.epoch"]),
    ({"dataset": "digits", "model": "resnet21"}, {}, ["experiments[1] (digits/resnet21)", "model.name = 'resnet21'", "unknown model"]),
    ({"dataset": "mnist2d", "model": "mlp"}, {}, ["experiments[1] (mnist2d/mlp)", "dataset.name = 'mnist2d'", "unknown dataset"]),
    ({"dataset": "digits", "model": "cnn1d"}, {}, ["experiments[1] (digits/cnn1d)", "model.name = 'cnn1d'", "1-D signals"]),
    ({"dataset": "digits", "model": {"name": "simplecnn", "width": 2.0}}, {},
     ["experiments[1]", "digits/simplecnn", "experiments[0]", "model.label"]),
    ({**MNIST1D, "overrides": {"connectors": {"pairs": [[0, 0]]}}}, {},
     ["experiments[1] (mnist1d/cnn1d)", "connectors.pairs[0] = [0, 0]", "itself"]),
    ({"dataset": 7, "model": "mlp"}, {}, ["experiments[1].dataset = 7", "wrong type"]),
    ({"dataset": {"name": "regression1d"}, "model": {"name": "mlp"}}, {},
     ["experiments[1]", "regression1d/mlp", "curves.regression", "label"]),
])
def test_a_bad_entry_is_refused_naming_the_entry_and_the_key(entry, layer, words):
    msg = refused(exps(DIGITS_CNN, entry, **layer))
    for w in words:
        assert w in msg, (w, msg)


def test_entries_are_checked_before_any_job_by_the_real_workflow(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(config(exps(DIGITS_CNN, {**MNIST1D, "overrides": {"curves": {"bends": 0}}}))))
    proc = snakemake(tmp_path, "-n", configfile=cfg, check=False)
    assert proc.returncode != 0
    assert "experiments[1] (mnist1d/cnn1d): curves.bends = 0" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


# ---- MNIST-1D ---------------------------------------------------------------------------------

NO_NETWORK = """
import socket, sys
def refuse(*a, **k):
    raise OSError("network is unreachable (blocked by the test)")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
sys.path.insert(0, {src!r})
import numpy as np
from losslab.data import load_dataset
a = load_dataset("mnist1d", data_dir={d!r}, mnist1d={opts!r})
b = load_dataset("mnist1d", data_dir={d!r}, mnist1d={opts!r})  # from the cache
np.savez({out!r}, x=a.train_x.numpy(), y=a.train_y.numpy(), xt=a.test_x.numpy(), same=(a.train_x == b.train_x).all().item())
"""


def _generate(tmp_path, name, opts) -> dict:
    out = tmp_path / f"{name}.npz"
    code = NO_NETWORK.format(src=str(REPO / "src"), d=str(tmp_path / name), opts=opts, out=str(out))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, env=dict(os.environ, PYTHONPATH=""))
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_mnist1d_is_generated_offline_deterministically_by_seed_and_cached(tmp_path):
    opts = {"num_samples": 200, "seed": 3}
    a = _generate(tmp_path, "a", opts)
    b = _generate(tmp_path, "b", opts)                      # another process, another cache folder
    c = _generate(tmp_path, "c", {**opts, "seed": 4})
    assert a["x"].shape == (160, 1, 40) and a["xt"].shape == (40, 1, 40)
    assert bool(a["same"])
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])
    assert not np.array_equal(a["x"], c["x"])
    assert set(np.unique(a["y"])) <= set(range(10))
    cached = list((tmp_path / "a" / "mnist1d").glob("mnist1d-*.npz"))
    assert len(cached) == 1


def test_mnist1d_regenerates_a_truncated_cache_and_reports_its_sizes(tmp_path):
    from losslab.data import dataset_info, load_dataset, mnist1d_cache

    opts = {"num_samples": 100, "final_seq_length": 24}
    first = load_dataset("mnist1d", data_dir=tmp_path, mnist1d=opts)
    path = mnist1d_cache(tmp_path, opts)
    path.write_bytes(path.read_bytes()[:100])               # truncated
    again = load_dataset("mnist1d", data_dir=tmp_path, mnist1d=opts)
    assert (again.train_x == first.train_x).all()
    info = dataset_info({"name": "mnist1d", "mnist1d": opts})
    assert (info.in_shape, info.n_train, info.n_test, info.num_outputs) == ((1, 24), 80, 20, 10)
    assert tuple(first.train_x.shape) == (80, 1, 24)


def test_mnist1d_generator_arguments_are_checked_by_the_schema():
    msg = refused({"dataset": {"name": "mnist1d", "mnist1d": {"train_split": 1.5}}, "model": {"name": "cnn1d"}})
    assert "dataset.mnist1d.train_split = 1.5" in msg


# ---- the claims matrix ------------------------------------------------------------------------

def _card(verdicts: dict[str, dict[str, tuple]]) -> pd.DataFrame:
    """A long card from {experiment: {claim: (verdict, effect, lo, hi)}}."""
    rows = []
    for e, claims in verdicts.items():
        for claim, (v, eff, lo, hi) in claims.items():
            rows.append({**sc._row(claim, effect=eff, lo=lo, hi=hi, n=3), "verdict": v, "experiment": e})
    return pd.DataFrame(rows)


def test_matrix_cells_summary_lines_and_pages():
    card = _card({"digits/simplecnn": {"curve_barrier": ("holds", 0.01, 0.0, 0.02), "swa_high_lr": ("inconclusive", 0.1, -0.1, 0.3)},
                  "mnist1d/cnn1d": {"curve_barrier": ("does not hold", 0.9, 0.7, 1.1), "swa_high_lr": ("not run", np.nan, np.nan, np.nan)},
                  "toy_wedge": {"toy_hyperplanes": ("holds", 2.5, 2.1, 2.9)}})
    assert sc.experiments_of(card) == ["digits/simplecnn", "mnist1d/cnn1d", "toy_wedge"]
    assert sc.summary_text(card, "curve_barrier") == "holds in 1 of 2 experiments"
    assert sc.summary_text(card, "swa_high_lr") == "holds in 0 of 1 experiment"   # not run is not counted
    m = sc.matrix(card)
    assert m.loc["curve_barrier", "mnist1d/cnn1d"] == "does not hold: 0.9 [0.7, 1.1]"
    assert m.loc["toy_hyperplanes", "digits/simplecnn"] == ""
    md = sc.matrix_markdown(card)
    assert "| `curve_barrier` | holds: 0.01 [0, 0.02] | does not hold: 0.9 [0.7, 1.1] |  | holds in 1 of 2 experiments |" in md
    page = sc.html(card)
    assert "Claims by experiment" in page and sc.COLOUR["does not hold"] in page and "holds in 1 of 2" in page
    land = sc.landing_rst(card, "intro")
    assert "     - mnist1d/cnn1d" in land and "**does not hold** 0.9 [0.7, 1.1]" in land
    assert "| `mnist1d/cnn1d` | `curve_barrier` |" in sc.card_markdown(card)


def test_score_runs_scores_each_experiment_and_the_toy_claim_once():
    hyper = pd.DataFrame({"s": 5, "d": [4, 4, 5, 5], "final_loss": [1.0, 1.0, 1e-4, 1e-4], "start_loss": 1.0})
    card = sc.score_runs({"a/m": {"hyperplanes": hyper}, "b/m": {"hyperplanes": hyper}})
    assert list(card.columns) == ["experiment"] + sc.COLUMNS
    toy = card[card["claim"] == "toy_hyperplanes"]
    assert list(toy["experiment"]) == ["toy_wedge"] and toy["verdict"].iloc[0] != sc.NOT_RUN
    for claim in set(sc.CLAIMS) - set(sc.SHARED_CLAIMS):
        assert list(card.loc[card["claim"] == claim, "experiment"]) == ["a/m", "b/m"]
    assert list(dict.fromkeys(card["claim"])) == list(sc.CLAIMS)


# ---- one tiny two-experiment run, end to end ----------------------------------------------------

@pytest.mark.e2e
def test_two_experiments_run_end_to_end_into_their_folders_and_one_matrix(tmp_path):
    layer = exps(DIGITS_CNN, {**MNIST1D, "overrides": {"curves": {"points": 5}, "endpoints": {"train": {"lr": 0.003}}}},
                 wedge={"enabled": False}, connectors={"enabled": False})
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump(config(layer)))
    snakemake(tmp_path, configfile=cfg)
    res = tmp_path / "results"
    along = {k: pd.read_parquet(res / k / "curves" / "bezier1/default/seed0-seed1/along.parquet")
             for k in ("digits/simplecnn", "mnist1d/cnn1d")}
    assert along["digits/simplecnn"]["t"].nunique() == 9 and along["mnist1d/cnn1d"]["t"].nunique() == 5
    assert (res / "regression1d" / "mlp").is_dir()
    card = pd.read_parquet(res / "scorecard.parquet")
    assert sc.experiments_of(card) == ["digits/simplecnn", "mnist1d/cnn1d", "toy_wedge"]
    barrier = card[card["claim"] == "curve_barrier"].set_index("experiment")
    assert set(barrier.index) == {"digits/simplecnn", "mnist1d/cnn1d"}
    assert np.isfinite(barrier["effect"]).all()
    page = (res / "scorecard.html").read_text()
    assert "mnist1d/cnn1d" in page and "Claims by experiment" in page
    assert "mnist1d/cnn1d" in (res / "report_landing.rst").read_text()
    again = snakemake(tmp_path, "-n", configfile=cfg)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_claims_preset_dry_runs_four_experiments_through_every_stage(tmp_path):
    from conftest import planned_jobs

    proc = snakemake(tmp_path, "-n", configfile=REPO / "presets" / "claims.yaml")
    jobs = planned_jobs(proc)
    out = proc.stdout + proc.stderr
    runs = ("digits/simplecnn", "digits/resnet20_bn", "digits/mlp", "mnist1d/cnn1d")
    for run in runs:
        for stage in ("endpoints", "curves", "connectors", "mconnectors", "tunnels", "swa", "align", "ensembles",
                      "spectra", "planes"):
            assert f"results/{run}/{stage}/" in out, (run, stage)
    assert jobs["scorecard"] == 1 and jobs["wedge_hyperplanes"] == 1 and jobs["curve_predictions"] == 1
    assert jobs["connector"] == 3 * len(runs) and jobs["swa_run"] == 3 * len(runs)
    assert not (tmp_path / "data").exists()  # planning generates no data
