"""environment.yml and pyproject.toml declare the same packages with the same lower bounds."""
import re
import tomllib

import yaml

from conftest import REPO

CONDA_NAMES = {"pytorch": "torch"}


def _name_and_bound(req: str):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", req)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    want = dict(_name_and_bound(r) for r in py["dependencies"] + py["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    have = {}
    for dep in env["dependencies"]:
        reqs = dep["pip"] if isinstance(dep, dict) else [dep]
        for r in reqs:
            if r.startswith("-e") or r.startswith("python=") or r == "pip":
                continue
            name, bound = _name_and_bound(r)
            have[CONDA_NAMES.get(name, name)] = bound
    assert have == want
