"""The JSON schema of profile reports and a small validator for it.

In: a JSON-like value (dicts, lists, str, int, float, bool, None) and a
schema (by default ``report.schema.json``, shipped in this package).
Out: ``validate()`` returns the list of problems found, each as
``"<path>: <what>"`` (empty: valid).

Only the part of JSON Schema (draft-07) the report schema uses is
understood: ``type`` (one name or a list), ``properties``, ``required``,
``additionalProperties: false``, ``items``, ``minimum``, ``const``,
``pattern`` and local ``$ref`` (``#/definitions/...``). Any other keyword in
a schema is an error, so the schema cannot silently outgrow the validator.
"""
from __future__ import annotations

import json
import re
from importlib import resources

_KNOWN = {"$schema", "title", "description", "type", "properties", "required",
          "additionalProperties", "items", "minimum", "const", "pattern", "$ref", "definitions"}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def report_schema() -> dict:
    """The schema of profile reports, loaded from the installed package."""
    text = resources.files("janus_frame.diagnostics").joinpath("report.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


def validate(value, schema: dict | None = None) -> list[str]:
    root = report_schema() if schema is None else schema
    errors: list[str] = []
    _check(value, root, root, "$", errors)
    return errors


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check(value, schema: dict, root: dict, path: str, errors: list) -> None:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"schema keyword(s) not supported by this validator: {sorted(unknown)}")
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, path, errors)
        return
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in names):
            errors.append(f"{path}: expected {'/'.join(names)}, got {type(value).__name__}")
            return
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{path}: missing required property {name!r}")
        for name, v in value.items():
            if name in props:
                _check(v, props[name], root, f"{path}.{name}", errors)
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: unexpected property {name!r}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            _check(v, schema["items"], root, f"{path}[{i}]", errors)
