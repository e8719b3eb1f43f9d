"""The versioned JSON Schema of ``report.json`` (``report.schema.json``, shipped beside this
module) and its validation.

The schema file is the one source: :data:`SCHEMA_NAME` and :data:`SCHEMA_VERSION` are read from
it. It is documented in docs/report-schema.md; change its ``schema_version`` const (minor: fields
added, major: fields changed) with every change. One rule JSON Schema's standard types do not
make: a ``number`` is finite (JSON has no NaN/inf, so a report holding them could not be read
back by strict parsers), and an ``integer`` is an int, never a bool nor ``2.0``.

Two validators, one verdict. ``jsonschema`` (Draft 2020-12 with the two type rules above) is the
reference and names every violation. It costs ≈ 40 ms per report, so every report a run writes
is first checked by a predicate compiled once per process from the same schema file
(:func:`compile_schema`: nested closures, no interpretation per call; < 1 ms); only a report that
predicate refuses goes to ``jsonschema``, which names the violations. The compiler knows the
keywords the shipped schema uses and refuses any other, so a schema change it does not
understand makes every report go to ``jsonschema`` instead of being checked loosely; the tests
check that both agree on valid reports and thousands of mutated ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().with_name("report.schema.json")
REPORT_SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
SCHEMA_NAME: str = REPORT_SCHEMA["properties"]["schema"]["const"]
SCHEMA_VERSION: str = REPORT_SCHEMA["properties"]["schema_version"]["const"]

Check = Callable[[Any], bool]


class SchemaError(ValueError):
    """A report does not follow :data:`REPORT_SCHEMA`; ``errors`` lists every violation."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))
        self.errors = errors


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@cache
def _validator_class():  # a jsonschema validator class (imported when first needed)
    """Draft 2020-12 with finite numbers and strict integers (see the module docstring)."""
    from jsonschema import Draft202012Validator, validators

    def number(_checker: object, value: Any) -> bool:
        return _is_number(value)

    def integer(_checker: object, value: Any) -> bool:
        return _is_integer(value)

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many({"number": number, "integer": integer})
    return validators.extend(Draft202012Validator, type_checker=checker)


# --- the compiled predicate --------------------------------------------------------------------

# JSON types as the validator above defines them (jsonschema's "array" is a list, "object" a dict).
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": _is_number,
    "integer": _is_integer,
}
# Keywords that never constrain a value.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples"})


class UnsupportedSchemaError(ValueError):
    """The schema uses a keyword :func:`compile_schema` does not implement."""


def _key(value: Any) -> tuple:
    """A hashable stand-in for a JSON scalar with jsonschema's equality.

    ``True`` is not ``1``, ``1.0`` is ``1``; containers (not in the report's enums) raise TypeError.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if value is None:
        return ("null",)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    raise TypeError(type(value).__name__)


def _enum_check(values: list) -> Check:
    try:
        allowed = frozenset(_key(v) for v in values)
    except TypeError:
        raise UnsupportedSchemaError("enum/const with an array or object value") from None

    def check(v: Any) -> bool:
        try:
            return _key(v) in allowed
        except TypeError:  # an array or object: equal to no scalar
            return False
    return check


def compile_schema(schema: Any) -> Check:
    """A predicate ``check(value) -> bool`` equal to "jsonschema finds no error" for ``schema``.

    Implements the keywords the report schema uses (type, const, enum, required, properties,
    additionalProperties, items, minItems, maxItems, minimum, maximum, boolean schemas) with the
    number/integer rules of this module; raises :class:`UnsupportedSchemaError` on any other keyword.
    """
    if schema is True or schema == {}:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if not isinstance(schema, dict):
        raise UnsupportedSchemaError(f"a schema is an object or a boolean, not {type(schema).__name__}")
    unknown = set(schema) - _ANNOTATIONS - {
        "type", "const", "enum", "required", "properties", "additionalProperties", "items", "minItems",
        "maxItems", "minimum", "maximum"}
    if unknown:
        raise UnsupportedSchemaError(f"keywords {sorted(unknown)}")
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if any(n not in _TYPES for n in names):
            raise UnsupportedSchemaError(f"type {schema['type']!r}")
        tests = tuple(_TYPES[n] for n in names)
        checks.append(tests[0] if len(tests) == 1 else (lambda v, tests=tests: any(t(v) for t in tests)))
    if "const" in schema:
        checks.append(_enum_check([schema["const"]]))
    if "enum" in schema:
        checks.append(_enum_check(list(schema["enum"])))
    if "minimum" in schema or "maximum" in schema:
        lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
        # Like jsonschema: the bounds constrain numbers only (a NaN is not a number here).
        checks.append(lambda v, lo=lo, hi=hi: not _is_number(v) or lo <= v <= hi)
    if "minItems" in schema or "maxItems" in schema or "items" in schema:
        lo_n, hi_n = schema.get("minItems", 0), schema.get("maxItems", math.inf)
        if isinstance(schema.get("items", True), list):
            raise UnsupportedSchemaError("items as a list (prefixItems in Draft 2020-12)")
        item = compile_schema(schema.get("items", True))

        def array(v: Any, lo_n=lo_n, hi_n=hi_n, item=item) -> bool:
            if not isinstance(v, list):
                return True
            return lo_n <= len(v) <= hi_n and all(item(x) for x in v)
        checks.append(array)
    if {"required", "properties", "additionalProperties"} & set(schema):
        required = tuple(schema.get("required", ()))
        props = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        extra = None if extra_schema is True or extra_schema == {} else compile_schema(extra_schema)

        def obj(v: Any, required=required, props=props, extra=extra) -> bool:
            if not isinstance(v, dict):
                return True
            for name in required:
                if name not in v:
                    return False
            for name, value in v.items():
                check = props.get(name)
                if check is not None:
                    if not check(value):
                        return False
                elif extra is not None and not extra(value):
                    return False
            return True
        checks.append(obj)
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    all_checks = tuple(checks)
    return lambda v: all(c(v) for c in all_checks)


@cache
def _report_check() -> Check | None:
    """The report schema's compiled predicate, or None where the compiler cannot take it."""
    try:
        return compile_schema(REPORT_SCHEMA)
    except UnsupportedSchemaError:
        return None


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


@cache
def _report_validator() -> Any:
    """One jsonschema validator of the report schema per process (made on first use)."""
    return _validator_class()(REPORT_SCHEMA)


def schema_errors(value: Any, schema: dict, path: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``value``, as ``"<json path>: <problem>"`` strings (jsonschema)."""
    validator = _report_validator() if schema is REPORT_SCHEMA else _validator_class()(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{path}{_json_path(e.absolute_path)[1:]}: {e.message}" for e in errors]


def validate_report(report: dict) -> None:
    """Raise :class:`SchemaError` unless ``report`` follows the report schema and its invariants.

    Beyond the schema: a "complete" report names no failed stage, a "partial" one does. A report
    the compiled predicate accepts is valid; any other goes to jsonschema, which names the
    violations (and is the reference if the two ever disagreed).
    """
    check = _report_check()
    errors = [] if check is not None and check(report) else schema_errors(report, REPORT_SCHEMA)
    if not errors:
        if report["status"] == "complete" and report["failed_stage"] is not None:
            errors.append("$.failed_stage: a complete report names no failed stage")
        if report["status"] == "partial" and not report["failed_stage"]:
            errors.append("$.failed_stage: a partial report must name the stage that failed")
    if errors:
        raise SchemaError(errors)
