"""The configuration reference (docs/config.md), generated from the JSON schema.

    python -m losslab.docs > docs/config.md

``tests/test_docs.py`` fails when docs/config.md differs from what this prints, so the reference
cannot drift from the schema (and the schema's defaults are config.yaml's, checked by
``tests/test_plan.py``).
"""
from __future__ import annotations

import json

from .config import load_schema

HEADER = """# Configuration reference

Generated from the JSON schema in `workflow/schemas/` by `python -m losslab.docs > docs/config.md`;
a test fails when this file is stale. `config.yaml` holds exactly these defaults. A file given with
`--configfile` is merged over it, and `--config key=value` overrides single keys (nested values such
as `--config 'model={name: mlp, options: {hidden: 32}}'` are converted by the types below). Before
any job runs, the config is checked against this schema and then by the run plan
(`src/losslab/plan/`), which refuses anything a job would trip on, naming the key.
"""


def _resolve(sub: dict, schema: dict) -> dict:
    while isinstance(sub, dict) and "$ref" in sub:
        sub = {**schema["definitions"][sub["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub


def _type(sub: dict) -> str:
    t = sub.get("type", "")
    t = " or ".join(t) if isinstance(t, list) else t
    if t == "array" and isinstance(sub.get("items"), dict):
        t = f"list of {sub['items'].get('type', 'values')}"
    return t


def _allowed(sub: dict) -> str:
    parts = []
    if "enum" in sub:
        parts.append(", ".join(f"`{v}`" for v in sub["enum"]))
    for k, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if k in sub:
            parts.append(f"{word} {sub[k]}")
    items = sub.get("items") if isinstance(sub.get("items"), dict) else {}
    for k, word in (("minimum", "each >="), ("exclusiveMinimum", "each >")):
        if k in items:
            parts.append(f"{word} {items[k]}")
    if "enum" in items:
        parts.append("each one of " + ", ".join(f"`{v}`" for v in items["enum"]))
    for k, word in (("minItems", "at least {} entries"), ("maxItems", "at most {} entries")):
        if k in sub:
            parts.append(word.format(sub[k]))
    if "pattern" in sub:
        parts.append(f"matches `{sub['pattern']}`")
    return "; ".join(parts)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _rows(node: dict, schema: dict, prefix: str):
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, schema)
        dotted = f"{prefix}.{key}" if prefix else key
        if sub.get("type") == "object" and "properties" in sub:
            yield from _rows(sub, schema, dotted)
            continue
        default = json.dumps(sub["default"]) if "default" in sub else ""
        yield dotted, _type(sub), default, _allowed(sub), sub.get("description", "")
        if "properties" in sub:  # an object that may also be null: its keys below it
            yield from _rows(sub, schema, dotted)
        yield from _item_rows(sub, schema, dotted)


def _item_rows(sub: dict, schema: dict, dotted: str):
    """The keys of a list's entries (``experiments[].model``)."""
    items = sub.get("items")
    if isinstance(items, dict) and "properties" in items:
        yield from _rows(items, schema, dotted + "[]")


def reference() -> str:
    """The whole reference as Markdown."""
    schema = load_schema()
    out = [HEADER]
    props = schema["properties"]
    for section, sub in props.items():
        sub = _resolve(sub, schema)
        out.append(f"\n## `{section}`\n")
        if sub.get("description"):
            out.append(f"{sub['description']}\n")
        if sub.get("type") != "object" or "properties" not in sub:
            out.append("| key | type | default | allowed | meaning |\n|---|---|---|---|---|")
            out.append(f"| `{section}` | {_type(sub)} | `{json.dumps(sub.get('default'))}` | {_cell(_allowed(sub))} | "
                       f"{_cell(sub.get('description', ''))} |")
            for dotted, t, default, allowed, desc in _item_rows(sub, schema, section):
                d = f"`{default}`" if default else ""
                out.append(f"| `{dotted}` | {t} | {d} | {_cell(allowed)} | {_cell(desc)} |")
            continue
        out.append("| key | type | default | allowed | meaning |\n|---|---|---|---|---|")
        for dotted, t, default, allowed, desc in _rows(sub, schema, section):
            d = f"`{default}`" if default else ""
            out.append(f"| `{dotted}` | {t} | {d} | {_cell(allowed)} | {_cell(desc)} |")
    models = {k.split("model_options_")[1]: v for k, v in schema["definitions"].items() if k.startswith("model_options_")}
    out.append("\n## `model.options` of the built-in models\n")
    out.append("| model | option | type | allowed | meaning |\n|---|---|---|---|---|")
    for name, sub in models.items():
        for opt, o in sub["properties"].items():
            o = _resolve(o, schema)
            out.append(f"| `{name}` | `{opt}` | {_type(o)} | {_cell(_allowed(o))} | {_cell(o.get('description', ''))} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover - a command
    print(reference(), end="")
