"""The docs stay true: the config reference matches the schema, and what the README and docs name exists."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from losslab import config as C
from losslab.docs import reference
from losslab.plan import build_plan

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_config_reference_is_current():
    text = (REPO / "docs" / "config.md").read_text()
    assert text == reference(), "docs/config.md is stale: run  python -m losslab.docs > docs/config.md"


def test_config_reference_names_every_key_of_the_default_config():
    text = (REPO / "docs" / "config.md").read_text()

    def keys(node, prefix=""):
        for k, v in node.items():
            dotted = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict) and v and dotted not in ("model.options", "endpoints.settings", "endpoints.external"):
                yield from keys(v, dotted)
            else:
                yield dotted

    missing = [k for k in keys(yaml.safe_load((REPO / "config.yaml").read_text())) if f"`{k}`" not in text]
    assert not missing


def test_links_and_repository_paths_in_the_docs_exist():
    checked = 0
    for doc in DOCS:
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):  # markdown links
            if target.startswith("http"):
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: link {target}"
            checked += 1
        for path in re.findall(r"`((?:docs|examples|presets|profiles|benchmarks|workflow|src|tests|\.ci)/[\w./-]+)`", text):
            if "{" in path or "*" in path or path.endswith(("waves.npz", ".safetensors")) or "/outside/" in path:
                continue  # patterns, and files the examples' make_data.py writes
            assert (REPO / path).exists(), f"{doc.name}: {path}"
            checked += 1
    assert checked > 20


def test_readme_figures_are_what_the_default_run_makes(tmp_path):
    """The README's figure table names only figures the default run makes, and leaves none out
    (the regression experiment's own curve figures aside: the table names its functions figure)."""
    cfg = C.validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    targets = {t for t in build_plan(cfg, tmp_path).targets if t.endswith((".png", ".gif", ".html"))}
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## What it makes"):readme.index("## Configuration")]
    patterns = []
    for row in re.findall(r"^\| (`.+?) \| [^|]+ \|$", table, flags=re.M):
        codes = re.findall(r"`([^`]+)`", row)
        first = codes[0].replace("B/", "results/digits/simplecnn/")
        for code in codes:
            if code.startswith("-"):  # a suffix of the first name: `-training.gif`
                code = first[: -len(".png")] + code
            elif "/" not in code:  # a sibling of the first name
                code = first.rsplit("/", 1)[0] + "/" + code
            code = code.replace("B/", "results/digits/simplecnn/")
            if code.endswith((".png", ".gif", ".html")):
                patterns.append(code)
    assert len(patterns) >= 15

    def expand(pattern):  # `{a,b}` alternatives, each named on its own
        m = re.search(r"\{([^}]*,[^}]*)\}", pattern)
        if not m:
            return [pattern]
        return [q for alt in m.group(1).split(",") for q in expand(pattern[: m.start()] + alt + pattern[m.end():])]

    def regex(pattern):  # `{setting}`: any value
        return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern)) + "$")

    patterns = [q for p in patterns for q in expand(p)]
    regexes = {p: regex(p) for p in patterns}
    for p, r in regexes.items():
        assert any(r.match(t) for t in targets), f"README names {p}, which the default run does not make"
    left_out = [t for t in targets if not any(r.match(t) for r in regexes.values())
                and not t.startswith("results/regression1d/mlp/figures/curves_")]
    assert not left_out, f"figures of the default run missing from the README: {sorted(left_out)}"
