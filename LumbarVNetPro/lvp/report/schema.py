"""The versioned JSON Schema of ``report.json`` and a small validator for it.

``jsonschema`` is not a dependency, so :func:`validate_report` implements the subset of JSON
Schema the report schema uses: ``type`` (also a list of types), ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``enum``, ``const``, ``minimum``,
``maximum``, ``minItems`` and ``maxItems``. The schema is documented in docs/report-schema.md;
change :data:`SCHEMA_VERSION` (minor: fields added, major: fields changed) with every change.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_NAME = "lvp-report"
SCHEMA_VERSION = "1.2"

_NUM = {"type": "number"}
_POINT = {"type": "array", "items": _NUM, "minItems": 3, "maxItems": 3}
_POINT_OR_NULL = {"type": ["array", "null"], "items": _NUM, "minItems": 3, "maxItems": 3}
_PROB = {"type": ["number", "null"], "minimum": 0.0, "maximum": 1.0}
_STR_OR_NULL = {"type": ["string", "null"]}

_MEASUREMENT = {
    "type": "object",
    "required": ["value"],
    "properties": {
        "value": {"type": ["number", "null"]},
        "unit": {"type": "string"},
        "points_lps": {"type": "array", "items": _POINT},
    },
}

_GRADE = {
    "type": "object",
    "required": ["grade"],
    "properties": {
        "grade": {"type": ["integer", "null"]},
        "name": _STR_OR_NULL,
        "probabilities": {"type": ["array", "object", "null"]},
        "confidence": _PROB,
        "measurement": _STR_OR_NULL,
        "value": {"type": ["number", "null"]},
        "rule": _STR_OR_NULL,
        # 1.2 (issue 15): why a grade is withheld, what kind of confidence, named label probabilities.
        "status": {"enum": ["graded", "not assessable", "not found"]},
        "reason": _STR_OR_NULL,
        "confidence_kind": {"enum": ["calibrated", "heuristic", None]},
        "source": _STR_OR_NULL,
        "predicted": {"type": "array", "items": {
            "type": "object", "required": ["name", "value", "kind"],
            "properties": {"name": {"type": "string"}, "value": {"type": "number", "minimum": 0, "maximum": 1},
                           "kind": {"enum": ["calibrated", "heuristic"]}, "model": {"type": "string"}}}},
    },
}

# 1.2: a drawable piece of evidence (caliper, region, vector, coverage) in LPS mm.
_EVIDENCE = {
    "type": "object",
    "required": ["kind", "points_lps"],
    "properties": {
        "kind": {"enum": ["caliper", "region", "vector", "coverage"]},
        "measurement": _STR_OR_NULL,
        "plane": {"type": "string"},
        "label": {"type": "string"},
        "points_lps": {"type": "array", "items": _POINT},
        "sac_points_lps": {"type": "array", "items": _POINT},
        "slice_index": {"type": "integer", "minimum": 0},
    },
}

_SCAN_PLANE = {
    "type": ["object", "null"],
    "required": ["center_lps", "normal_lps"],
    "properties": {
        "center_lps": _POINT,
        "normal_lps": _POINT,
        "axis_u_lps": _POINT,
        "axis_v_lps": _POINT,
        "thickness_mm": _NUM,
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://lumbarvnetpro.org/schema/{SCHEMA_NAME}/{SCHEMA_VERSION}",
    "title": "LumbarVNetPro inference report",
    "type": "object",
    "required": ["schema", "schema_version", "lvp_version", "status", "failed_stage", "error", "input",
                 "model", "timings_s", "outputs", "structures", "levels", "warnings"],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "lvp_version": {"type": "string"},
        "created": {"type": "string"},
        "status": {"enum": ["complete", "partial"]},
        "failed_stage": _STR_OR_NULL,
        "error": _STR_OR_NULL,
        "input": {
            "type": "object",
            "required": ["path", "format", "size", "spacing", "origin", "direction", "coordinate_system"],
            "properties": {
                "path": {"type": "string"},
                "format": {"enum": ["dicom", "nifti", "nrrd", "mha"]},
                "series_uid": _STR_OR_NULL,
                "size": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3,
                         "maxItems": 3},
                "spacing": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 3,
                            "maxItems": 3},
                "origin": _POINT,
                "direction": {"type": "array", "items": _NUM, "minItems": 9, "maxItems": 9},
                "coordinate_system": {"const": "LPS"},
            },
        },
        "model": {
            "type": "object",
            "required": ["name", "version", "sha256"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                           "sha256": _STR_OR_NULL, "runtime": _STR_OR_NULL, "device": _STR_OR_NULL},
        },
        "timings_s": {"type": "object", "required": ["total"],
                      "additionalProperties": {"type": "number", "minimum": 0}},
        "outputs": {
            "type": "object",
            "required": ["segmentation", "segmentation_seg_nrrd", "report_html"],
            "additionalProperties": _STR_OR_NULL,
        },
        "structures": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "name", "kind", "center_lps", "volume_mm3", "confidence"],
                "properties": {
                    "label": {"type": "integer", "minimum": 1, "maximum": 255},
                    "name": {"type": "string"},
                    "kind": {"enum": ["vertebra", "disc", "canal", "sacrum"]},
                    "center_lps": _POINT_OR_NULL,
                    "volume_mm3": {"type": "number", "minimum": 0},
                    "confidence": _PROB,
                },
            },
        },
        "levels": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["level", "disc_label", "center_lps", "confidence", "measurements", "grades",
                             "scan_plane"],
                "properties": {
                    "level": {"type": "string"},
                    "disc_label": {"type": "integer", "minimum": 1, "maximum": 255},
                    "center_lps": _POINT_OR_NULL,
                    "confidence": _PROB,
                    "measurements": {"type": "object", "additionalProperties": _MEASUREMENT},
                    "grades": {"type": "object", "additionalProperties": _GRADE},
                    "scan_plane": _SCAN_PLANE,
                    # 1.2: every expected level has a row; why a grade is missing; the evidence drawn.
                    "status": {"enum": ["found", "not found"]},
                    "notes": {"type": "array", "items": {"type": "string"}},
                    "evidence": {"type": "array", "items": _EVIDENCE},
                    "section": {"type": "object"},
                },
            },
        },
        "axial": {"type": ["object", "null"]},
        # The DICOM input's patient/study identity (docs/report-schema.md): only the attributes the
        # input holds; absent for other formats.
        "study": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "string"} for k in (
                "PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID",
                "StudyDate", "SeriesDate", "StudyDescription", "SeriesDescription")},
        },
        # 1.1: the numbering check (lvp.labelling.numbering); null when no labelling ran.
        "numbering": {
            "type": ["object", "null"],
            "required": ["confident", "reasons"],
            "properties": {"confident": {"type": "boolean"},
                           "reasons": {"type": "array", "items": {"type": "string"}}},
        },
        "warnings": {
            "type": "array",
            "items": {"type": "object", "required": ["code", "message"],
                      "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        },
    },
}


class SchemaError(ValueError):
    """A report does not follow :data:`REPORT_SCHEMA`; ``errors`` lists every violation."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))
        self.errors = errors


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        # JSON has no NaN/inf: a report holding them could not be read back by strict parsers.
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    raise ValueError(f"unknown schema type {name!r}")


def schema_errors(value: Any, schema: dict, path: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``value``, as ``"<json path>: <problem>"`` strings."""
    errors: list[str] = []
    if "const" in schema and value != schema["const"]:
        return [f"{path}: expected {schema['const']!r}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.60}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required field {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{path}: key {key!r} is not a string")
            elif key in props:
                errors += schema_errors(item, props[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected field {key!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, f"{path}.{key}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: {len(value)} items, at least {schema['minItems']} needed")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: {len(value)} items, at most {schema['maxItems']} allowed")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


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
