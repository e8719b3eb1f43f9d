"""The versioned JSON Schema of ``report.json`` (``report.schema.json``, shipped beside this
module) and its validation with ``jsonschema`` (Draft 2020-12).

The schema file is the one source: :data:`SCHEMA_NAME` and :data:`SCHEMA_VERSION` are read from
it. It is documented in docs/report-schema.md; change its ``schema_version`` const (minor: fields
added, major: fields changed) with every change. One rule JSON Schema's standard types do not
make: a ``number`` is finite (JSON has no NaN/inf, so a report holding them could not be read
back by strict parsers), and an ``integer`` is an int, never a bool nor ``2.0``.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().with_name("report.schema.json")
REPORT_SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
SCHEMA_NAME: str = REPORT_SCHEMA["properties"]["schema"]["const"]
SCHEMA_VERSION: str = REPORT_SCHEMA["properties"]["schema_version"]["const"]


class SchemaError(ValueError):
    """A report does not follow :data:`REPORT_SCHEMA`; ``errors`` lists every violation."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))
        self.errors = errors


@cache
def _validator_class():  # a jsonschema validator class (imported when first validating)
    """Draft 2020-12 with finite numbers and strict integers (see the module docstring)."""
    from jsonschema import Draft202012Validator, validators

    def number(_checker: object, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def integer(_checker: object, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many({"number": number, "integer": integer})
    return validators.extend(Draft202012Validator, type_checker=checker)


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def schema_errors(value: Any, schema: dict, path: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``value``, as ``"<json path>: <problem>"`` strings."""
    validator = _validator_class()(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{path}{_json_path(e.absolute_path)[1:]}: {e.message}" for e in errors]


def validate_report(report: dict) -> None:
    """Raise :class:`SchemaError` unless ``report`` follows the report schema and its invariants.

    Beyond the schema: a "complete" report names no failed stage, a "partial" one does.
    """
    errors = schema_errors(report, REPORT_SCHEMA)
    if not errors:
        if report["status"] == "complete" and report["failed_stage"] is not None:
            errors.append("$.failed_stage: a complete report names no failed stage")
        if report["status"] == "partial" and not report["failed_stage"]:
            errors.append("$.failed_stage: a partial report must name the stage that failed")
    if errors:
        raise SchemaError(errors)
