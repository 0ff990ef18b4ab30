"""Config validation: JSON schema with defaults, then checks the schema cannot express.

``validate_config`` is called by the Snakefile before any job runs. Errors name the offending
key (``endpoints.train.epochs``) and, where there is a fixed set, the allowed values.
"""
from __future__ import annotations

import ast
import copy
import functools
import re
from pathlib import Path

import jsonschema
import yaml

from . import catalog

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def load_schema(schema_dir: Path = SCHEMA_DIR) -> dict:
    """The main schema plus every ``sections/*.schema.yaml`` (one top-level property each)."""
    schema = yaml.safe_load((schema_dir / "config.schema.yaml").read_text())
    for part in sorted((schema_dir / "sections").glob("*.schema.yaml")):
        sec = yaml.safe_load(part.read_text())
        schema["properties"].update(sec.get("properties", {}))
        schema.setdefault("definitions", {}).update(sec.get("definitions", {}))
    return schema


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
                elif "$ref" in sub and prop not in instance and "default" in sub:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _message(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        where = (key + ".") if err.absolute_path else ""
        return f"unknown key {', '.join(where + e for e in extra)!s}; allowed keys here: {', '.join(allowed)}"
    if v == "enum":
        return f"{key} = {err.instance!r} is not allowed; allowed values: {', '.join(map(str, err.validator_value))}"
    if v == "type":
        return f"{key} = {err.instance!r} has the wrong type; expected {err.validator_value}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key} = {err.instance!r} is out of range; it must be {word} {err.validator_value}"
    return f"{key}: {err.message}"


def validate_config(config: dict, schema_dir: Path = SCHEMA_DIR) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError."""
    schema = load_schema(schema_dir)
    coerce_cli_strings(config, schema, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(_message(e) for e in errors)
        raise ConfigError(f"invalid configuration:\n  {lines}")
    # Defaults inside $ref'd definitions are filled by a second pass over the filled config.
    _Validator(schema).validate(config)
    _semantic_checks(config)
    # Snakemake compares rule params by their text: sort keys so that the order of keys in the
    # YAML files (or of merged --configfile layers) never triggers a rerun.
    ordered = canonical(config)
    config.clear()
    config.update(ordered)
    return config


_INT = re.compile(r"^[+-]?[0-9]+$")
_BOOL = {"true": True, "false": False, "True": True, "False": False}


def _scalar(value: str, types):
    types = [types] if isinstance(types, str) else list(types or [])
    if "string" in types:
        return value
    if "integer" in types and _INT.match(value):
        return int(value)
    if "number" in types:
        try:
            return int(value) if _INT.match(value) else float(value)
        except ValueError:
            return value
    if "boolean" in types and value in _BOOL:
        return _BOOL[value]
    return value


def coerce_cli_strings(node, sub: dict, schema: dict):
    """Turn the strings of nested ``--config`` values back into numbers and booleans.

    Snakemake parses ``--config section="{key: 0}"`` (and a profile's ``config:``) with YAML's
    BaseLoader, so every nested scalar arrives as a string. Where the schema expects an integer,
    number or boolean and the string spells exactly one, it is converted in place; anything else
    is left for the schema to reject with the key named.
    """
    while isinstance(sub, dict) and "$ref" in sub:
        sub = schema.get("definitions", {}).get(sub["$ref"].rsplit("/", 1)[-1], {})
    if not isinstance(sub, dict):
        return node
    if isinstance(node, dict):
        props = sub.get("properties", {})
        extra = sub.get("additionalProperties")
        for k, v in list(node.items()):
            child = props.get(k, extra if isinstance(extra, dict) else None)
            if child is not None:
                node[k] = coerce_cli_strings(v, child, schema)
    elif isinstance(node, list) and isinstance(sub.get("items"), dict):
        node[:] = [coerce_cli_strings(v, sub["items"], schema) for v in node]
    elif isinstance(node, str):
        return _scalar(node, sub.get("type"))
    return node


def canonical(obj):
    """A copy of ``obj`` with every dict's keys sorted, recursively."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    return obj


def _semantic_checks(config: dict) -> None:
    try:
        catalog.check_model_spec(config["model"])
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    d = config["dataset"]
    try:
        catalog.check_dataset(d["name"], d["data_dir"], d["download"])
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"invalid configuration: dataset.name: {exc}") from None


PACKAGE_DIR = Path(__file__).resolve().parent


def source_imports(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The losslab modules a Python file imports, read from its source (nothing is imported)."""
    return set(_source_imports(str(path), str(package_dir)))


@functools.lru_cache(maxsize=None)
def _source_imports(path: str, package_dir: str) -> frozenset[str]:
    package_dir = Path(package_dir)
    tree = ast.parse(Path(path).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("losslab.")}
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1 and node.module:  # from .io import x
                found.add(parts[0])
            elif node.level == 1 or parts == ["losslab"]:  # from . import io / from losslab import io
                found |= {a.name for a in node.names}
            elif parts[0] == "losslab":  # from losslab.io import x
                found.add(parts[1])
    return frozenset(m for m in found if (package_dir / f"{m}.py").exists())


def library_closure(modules, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``modules`` and every losslab module they import, directly or not (sorted)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(source_imports(package_dir / f"{m}.py", package_dir))
    return sorted(seen)
