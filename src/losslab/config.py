"""Config validation: the JSON schema with defaults, and the repairs the schema cannot express.

``validate_config`` is the first thing the Snakefile does, before the run plan
(:mod:`losslab.plan`) checks everything that crosses sections. Every error names the dotted key
(``endpoints.train.epochs``), the value, what is allowed and, where it helps, what to do.

What arrives is not always what the user meant, so before the schema check:

* ``--config`` values nested in a mapping arrive as strings (Snakemake reads them with YAML's
  BaseLoader): where the schema types a key as integer, number, boolean or null and the string
  spells exactly one, it is converted (``"false"`` -> ``False``, ``"32"`` -> ``32``,
  ``"null"`` -> ``None``). ``model.options`` are typed per model by the schema's
  ``model_options_<name>`` definitions, so they are converted by that type too.
* An integral float where the schema wants an integer (``epochs: 3.0``) becomes the integer.
* Unquoted YAML 1.1 words (``on``, ``off``, ``yes``, ``no``) reach us as booleans; where the
  schema wants a string the message says to quote them.
* A config file with a key twice in one mapping is refused with the file and both lines (YAML
  loaders silently keep the last one).
"""
from __future__ import annotations

import ast
import copy
import functools
import os
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
    return copy.deepcopy(_load_schema(str(schema_dir)))


@functools.lru_cache(maxsize=4)
def _load_schema(schema_dir: str) -> dict:
    schema_dir = Path(schema_dir)
    schema = yaml.safe_load((schema_dir / "config.schema.yaml").read_text())
    for part in sorted((schema_dir / "sections").glob("*.schema.yaml")):
        sec = yaml.safe_load(part.read_text())
        schema["properties"].update(sec.get("properties", {}))
        schema.setdefault("definitions", {}).update(sec.get("definitions", {}))
    # model.options are typed per built-in model by the catalogue's types
    model = schema["properties"]["model"]
    model["allOf"] = []
    for name, opts in catalog.MODEL_OPTION_TYPES.items():
        schema["definitions"][f"model_options_{name}"] = {"type": "object", "additionalProperties": False,
                                                          "properties": copy.deepcopy(opts)}
        model["allOf"].append({"if": {"properties": {"name": {"const": name}}},
                               "then": {"properties": {"options": {"$ref": f"#/definitions/model_options_{name}"}}}})
    return schema


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _key(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


_YAML11 = ("YAML reads the unquoted words on, off, yes, no, true and false as booleans; "
           "write the value in quotes, e.g. \"on\"")


def _message(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    v = err.validator
    desc = err.schema.get("description") if isinstance(err.schema, dict) else None
    what = f" ({desc})" if desc else ""
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        where = (key + ".") if err.absolute_path else ""
        return (f"unknown key {', '.join(where + e for e in extra)!s}; allowed keys here: "
                f"{', '.join(allowed) or '(none)'}")
    if v == "enum":
        return f"{key} = {err.instance!r} is not allowed; allowed values: {', '.join(map(str, err.validator_value))}"
    if v == "type":
        want = err.validator_value
        hint = ""
        if isinstance(err.instance, bool) and "string" in ([want] if isinstance(want, str) else want):
            hint = f"; {_YAML11}"
        return f"{key} = {err.instance!r} has the wrong type; expected {want}{what}{hint}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key} = {err.instance!r} is out of range; it must be {word} {err.validator_value}{what}"
    if v in ("minItems", "maxItems"):
        word = "at least" if v == "minItems" else "at most"
        return f"{key} = {err.instance!r} must have {word} {err.validator_value} entries{what}"
    if v == "uniqueItems":
        return f"{key} = {err.instance!r} has repeated entries; each may appear once"
    if v == "minProperties":
        return f"{key} must define at least {err.validator_value} entry{what}"
    if v == "pattern":
        return f"{key} = {err.instance!r} must match {err.validator_value} (letters, digits, '_', '.', '-'){what}"
    return f"{key} = {err.instance!r}: {err.message}"


def validate_config(config: dict, schema_dir: Path = SCHEMA_DIR, files=()) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError.

    ``files`` are the config files the config was read from (checked for duplicated keys)."""
    for f in files:
        check_config_file(f)
    schema = load_schema(schema_dir)
    coerce_cli_strings(config, schema, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  ".join(dict.fromkeys(_message(e) for e in errors))
        raise ConfigError(f"invalid configuration:\n  {lines}")
    # Defaults inside $ref'd definitions are filled by a second pass over the filled config.
    _Validator(schema).validate(config)
    try:  # the name forms (built-in names, or the researcher's own model / data)
        catalog.model_kind(config["model"]["name"])
        catalog.dataset_kind(config["dataset"]["name"])
    except ValueError as exc:
        raise ConfigError(f"invalid configuration:\n  {exc}") from None
    config["results_dir"] = _folder(config["results_dir"], "results_dir", "results")
    config["dataset"]["data_dir"] = _folder(config["dataset"]["data_dir"], "dataset.data_dir", "data")
    # Snakemake compares rule params by their text: sort keys so that the order of keys in the
    # YAML files (or of merged --configfile layers) never triggers a rerun.
    ordered = canonical(config)
    config.clear()
    config.update(ordered)
    return config


def _folder(value: str, key: str, example: str) -> str:
    """A folder path without a trailing slash; empty, '.' and '/' are refused."""
    text = value.strip()
    if not text:
        raise ConfigError(f"invalid configuration:\n  {key} = {value!r} is empty; give a folder, e.g. {example}")
    norm = os.path.normpath(text)
    if norm in (".", os.sep) or norm == os.path.abspath(os.sep):
        raise ConfigError(f"invalid configuration:\n  {key} = {value!r} would put files directly into "
                          f"{'the working directory' if norm == '.' else 'the filesystem root'}; "
                          f"give a folder, e.g. {example}")
    return norm


_INT = re.compile(r"^[+-]?[0-9]+$")
_BOOL = {"true": True, "false": False, "True": True, "False": False}
_NULL = ("null", "Null", "NULL", "~", "None")


def _types(sub: dict) -> list[str]:
    t = sub.get("type")
    return [t] if isinstance(t, str) else list(t or [])


def _scalar(value, types: list[str]):
    """One value converted by its schema types (strings from the command line, integral floats)."""
    if isinstance(value, float) and "integer" in types and "number" not in types and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value
    if "null" in types and value in _NULL:
        return None
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


def _yaml_scalar(value):
    """A command-line string read as YAML would read it (for options that have no schema)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if parsed is None or isinstance(parsed, (bool, int, float, list)) else value


def _resolve(sub, schema: dict):
    while isinstance(sub, dict) and "$ref" in sub:
        sub = {**schema.get("definitions", {}).get(sub["$ref"].rsplit("/", 1)[-1], {}),
               **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub


def _properties(node: dict, sub: dict, schema: dict) -> dict:
    """The property schemas of a mapping, with the ``then`` branches whose ``if`` holds for it."""
    props = dict(sub.get("properties", {}))
    for part in sub.get("allOf", []):
        cond = part.get("if", {}).get("properties", {})
        if cond and all(node.get(k, props.get(k, {}).get("default")) == c.get("const") for k, c in cond.items()):
            for k, v in part.get("then", {}).get("properties", {}).items():
                props[k] = {**props.get(k, {}), **_resolve(v, schema)}
    return props


def coerce_cli_strings(node, sub: dict, schema: dict):
    """Convert values in place by their schema types (see the module docstring); return ``node``.

    Where no schema types a value (a user model's options), a string is read as YAML would read
    it. Anything else is left for the schema to reject with the key named.
    """
    sub = _resolve(sub, schema)
    if not isinstance(sub, dict):
        return node
    if isinstance(node, dict):
        props = _properties(node, sub, schema)
        extra = sub.get("additionalProperties")
        for k, v in list(node.items()):
            child = props.get(k, extra if isinstance(extra, dict) else None)
            if child is not None:
                node[k] = coerce_cli_strings(v, child, schema)
        if "name" in props and "options" in node and isinstance(node["options"], dict) \
                and "additionalProperties" not in _resolve(props.get("options", {}), schema):
            node["options"] = {k: _yaml_scalar(v) for k, v in node["options"].items()}
    elif isinstance(node, list) and isinstance(sub.get("items"), dict):
        node[:] = [coerce_cli_strings(v, sub["items"], schema) for v in node]
    else:
        return _scalar(node, _types(sub))
    return node


def canonical(obj):
    """A copy of ``obj`` with every dict's keys sorted, recursively."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    return obj


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice (naming both lines)."""

    source = "config"

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"invalid configuration:\n  config file {self.source}, line {line}: key {key!r} appears "
                    f"twice in one mapping (first at line {seen[key]}); YAML would silently keep only the "
                    "later one. Merge the two blocks into one.")
            seen[key] = line
        return super().construct_mapping(node, deep)


def check_config_file(path) -> dict:
    """Read one YAML config file, refusing duplicated keys; return its content."""
    path = Path(path)
    text = path.read_text()
    loader = _UniqueKeyLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data() or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid configuration:\n  config file {path} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of library module ``name`` ("io", "figures.curves", a package "figures"), or None."""
    base = package_dir.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def source_imports(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The losslab modules a Python file imports, read from its source (nothing is imported):
    dotted names relative to the package ("io", "figures.curves"), with every parent package."""
    return set(_source_imports(str(path), str(package_dir)))


@functools.lru_cache(maxsize=None)
def _source_imports(path: str, package_dir: str) -> frozenset[str]:
    package_dir, path = Path(package_dir), Path(path)
    tree = ast.parse(path.read_text())
    try:  # a library module: relative imports resolve against its own package
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        here = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    except ValueError:
        here = None
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("losslab.")}
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".") if node.module else []
            if node.level == 0:
                if not module or module[0] != "losslab":
                    continue
                base = module[1:]
            elif here is not None and node.level - 1 <= len(here):
                base = here[: len(here) - (node.level - 1)] + module
            else:
                continue
            if base:
                found.add(".".join(base))
            found |= {".".join(base + [a.name]) for a in node.names}
    out = set()
    for name in found:
        if module_file(name, package_dir):
            bits = name.split(".")
            out |= {".".join(bits[: i + 1]) for i in range(len(bits)) if module_file(".".join(bits[: i + 1]), package_dir)}
    return frozenset(out)


def library_closure(modules, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``modules`` and every losslab module they import, directly or not (sorted)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            path = module_file(m, package_dir)
            if path is None:
                raise ValueError(f"no library module {m!r} in {package_dir}")
            todo.extend(source_imports(path, package_dir))
    return sorted(seen)
