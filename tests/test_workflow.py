"""Real Snakemake runs: the default DAG resolves, a tiny run works, only changed stages rerun."""
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, planned_jobs, snakemake
from losslab import io


def test_default_dag_resolves(tmp_path):
    proc = snakemake(tmp_path, "-n", configfile=None)
    jobs = planned_jobs(proc)
    assert jobs["train_endpoint"] >= 3 and jobs["all"] == 1


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  train:\n    epochs: 0\n")
    proc = snakemake(tmp_path, "-n", configfile=bad, check=False)
    assert proc.returncode != 0
    assert "endpoints.train.epochs = 0 is out of range" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_tiny_endpoints_end_to_end(tiny_copy):
    tmp_path = tiny_copy  # the shared tiny run of the whole workflow
    base = tmp_path / "results/digits/simplecnn"
    for seed in (0, 1, 2):
        m = io.read_parquet(base / f"endpoints/default/seed{seed}/metrics.parquet")
        assert {"dataset", "model", "setting", "seed", "epoch", "split", "loss", "accuracy", "status"} <= set(m.columns)
        assert (m["status"] == "ok").all() and m["epoch"].max() == 4
        p = io.load_point(base / f"endpoints/default/seed{seed}/model.pt")
        assert p.meta["status"] == "ok" and p.flat.ndim == 1
        assert not (base / f"endpoints/default/seed{seed}/resume.pt").exists()
    summary = io.read_parquet(base / "endpoints/summary.parquet")
    assert len(summary) == 6 and summary["accuracy"].min() > 0.5
    assert (base / "figures/endpoint_training.png").stat().st_size > 10_000
    assert (tmp_path / "logs/digits/simplecnn/endpoints/default/seed0.log").read_text().count("epoch") >= 4

    # a second run does nothing
    again = snakemake(tmp_path, "-n", "results/digits/simplecnn/endpoints/summary.parquet")
    assert planned_jobs(again) == {}

    # a config section endpoint training does not use leaves the endpoints alone
    cfg = yaml.safe_load(TINY.read_text())
    cfg["results_dir"] = "results"
    cfg["compute"]["memory_budget_mb"] = 999  # operational, not a param of training
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", "results/digits/simplecnn/endpoints/summary.parquet", configfile=changed)
    assert "train_endpoint" not in planned_jobs(proc)

    # a change to the endpoint settings retrains them
    cfg["endpoints"]["train"]["lr"] = 0.002
    changed.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", "results/digits/simplecnn/endpoints/summary.parquet", configfile=changed)
    assert planned_jobs(proc).get("train_endpoint") == 3


@pytest.mark.e2e
def test_report_has_every_figure_with_its_caption(tiny_copy):
    """`snakemake --report` over the whole tiny run: every PNG and GIF the run drew is in it, and
    every plane's interactive HTML."""
    report = tiny_copy / "report.zip"  # a .zip report keeps one file per figure, so it can be listed
    snakemake(tiny_copy, "--report", str(report))
    import zipfile

    import html as htmllib

    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        html = htmllib.unescape(z.read(next(n for n in names if n.endswith("report.html"))).decode(errors="ignore"))
    figures = sorted(p.name for p in (tiny_copy / "results").rglob("*") if p.suffix in (".png", ".gif")
                     or (p.suffix == ".html" and p.parent.name == "planes"))
    assert len(figures) >= 15
    packed = {Path(n).name for n in names}
    assert set(figures) <= packed, sorted(set(figures) - packed)
    for caption in (REPO / "workflow" / "report").glob("*.rst"):
        if caption.name == "workflow.rst":
            continue
        first = caption.read_text().split()[:6]  # each caption's opening words appear in the report
        assert " ".join(first)[:30] in " ".join(html.split()), caption.name
    # the landing page is the scorecard: every claim with its verdict, effect and interval
    from losslab import scorecard

    card = io.read_parquet(tiny_copy / "results" / "scorecard.parquet")
    text = " ".join(html.split())
    assert "Scorecard" in text and scorecard.counts_text(card) in text
    for r in card.itertuples():
        assert r.claim in text and scorecard.interval_text(r) in text, r.claim


def test_cifar10_preset_dry_runs_at_paper_scale(tmp_path):
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    preset = yaml.safe_load((REPO / "presets" / "cifar10.yaml").read_text())
    preset["dataset"]["data_dir"] = str(tmp_path / "data")
    cfg = tmp_path / "preset.yaml"
    cfg.write_text(yaml.safe_dump(preset))
    proc = snakemake(tmp_path, "-n", configfile=cfg)
    jobs = planned_jobs(proc)
    assert jobs["train_endpoint"] >= 10 + 18 * 3  # ten seeds, three per swept value off the base
    assert "results/cifar10/simplecnn/endpoints" in proc.stdout
    # every stage runs at the preset's scale: 101 x 101 planes in 4 x 4 tiles, the full sweeps
    assert jobs["plane_tile"] >= 16 * 3
    assert jobs["swa_run"] == 3  # one job per seed runs its 5 lrs x 2 schedules
    assert jobs["tunnel_widths"] == 1 + 4 + 4 + 4 + 3 + 3  # default + each value off the base
    assert jobs["spectra_curve"] == 5 * 2  # bezier and chain on each of the five curve pairs
    assert jobs["connector"] == 5  # five disjoint pairs of optima
    for rule in ("train_curve", "connector", "mconnector", "ensemble_fge", "align_pair", "spectra_connector", "scorecard"):
        assert jobs[rule] >= 1, rule


def test_missing_cifar_data_is_reported_before_any_job(tmp_path):
    proc = snakemake(tmp_path, "-n", configfile=REPO / "presets" / "cifar10.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dataset.download: true" in out and "cifar-10-batches-py" in out


def test_every_rule_lists_the_library_modules_its_script_imports():
    """A rule's inputs hold the library modules its script imports (lib(): with their own imports),
    so editing a module reruns every rule that runs it."""
    import re

    from losslab.config import library_closure, source_imports

    scripts = REPO / "workflow" / "scripts"
    checked = 0
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=[ \t]*rule\b[ \w]*:)", smk.read_text())[1:]:
            rule = block.split(":", 1)[0].split()[-1]  # "rule" itself for rules named in a loop
            script = re.search(r'script:\s*"\.\./scripts/(\w+)\.py"', block)
            if not script:
                continue
            listed = re.search(r"code=lib\(([^)]*)\)", block)
            assert listed, f"rule {rule} ({smk.name}) runs a script but lists no library modules"
            inputs = set(library_closure(("__init__", "io", "device") + tuple(re.findall(r'"([\w.]+)"', listed.group(1)))))
            used = source_imports(scripts / f"{script.group(1)}.py")
            assert used <= inputs, f"rule {rule}: {script.group(1)}.py imports {sorted(used - inputs)} not in its inputs"
            checked += 1
    assert checked >= 30


TABLE_AND_FIGURE_SCRIPTS = ["endpoint_summary", "gather_tables", "swa_summary", "plane_gather"]


def test_table_and_figure_jobs_start_without_torch():
    """Gathers, summaries and figures read Parquet only, so their jobs skip the torch import."""
    import subprocess
    import sys

    from losslab.config import source_imports

    scripts = REPO / "workflow" / "scripts"
    names = TABLE_AND_FIGURE_SCRIPTS + sorted(p.stem for p in scripts.glob("*.py") if p.stem.startswith(("plot_", "animate_")))
    assert len(names) >= 12
    mods = set()
    for name in names:
        assert "import torch" not in (scripts / f"{name}.py").read_text(), name
        mods |= source_imports(scripts / f"{name}.py")
    code = f"import sys\nfor m in {sorted(mods)!r}: __import__('losslab.' + m)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src")}).stdout
    assert out.strip() == "False", f"the library modules of {names} import torch: {sorted(mods)}"


def test_lint_is_clean(tmp_path):
    """`snakemake --lint` finds nothing: every rule has a log, a benchmark and the project's conda
    environment, rule files hold rules only (their helpers live in the plan), paths are f-strings."""
    proc = snakemake(tmp_path, "--lint", configfile=None, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-3000:]
