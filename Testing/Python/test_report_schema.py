"""report.json schema: a valid report passes, every kind of violation is caught."""

from __future__ import annotations

import copy

import pytest

from lvp.report.schema import REPORT_SCHEMA, SCHEMA_VERSION, SchemaError, schema_errors, validate_report


def _valid() -> dict:
    return {
        "schema": "lvp-report", "schema_version": SCHEMA_VERSION, "lvp_version": "0.1.0",
        "status": "complete", "failed_stage": None, "error": None,
        "input": {"path": "a.nii.gz", "format": "nifti", "series_uid": None, "size": [512, 640, 15],
                  "spacing": [0.47, 0.47, 1.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
                  "coordinate_system": "LPS"},
        "model": {"name": "lvp-vnet", "version": "1.0.0", "sha256": "ab" * 32},
        "timings_s": {"read": 0.1, "total": 0.5},
        "outputs": {"segmentation": "segmentation.nii.gz", "segmentation_seg_nrrd": "segmentation.seg.nrrd",
                    "report_html": "report.html"},
        "structures": [{"label": 45, "name": "L5", "kind": "vertebra", "center_lps": [1.0, 2.0, 3.0],
                        "volume_mm3": 41000.0, "confidence": 0.97}],
        "levels": [{"level": "L4-L5", "disc_label": 95, "center_lps": [1.0, 2.0, 3.0], "confidence": 0.9,
                    "measurements": {"disc_height_mm": {"value": 9.1, "unit": "mm"}},
                    "grades": {"herniation": {"grade": 2, "probabilities": [0.1, 0.2, 0.6, 0.1],
                                              "confidence": 0.6}},
                    "scan_plane": {"center_lps": [0, 0, 0], "normal_lps": [0, 0, 1]}}],
        "axial": None,
        "warnings": [{"code": "x", "message": "y"}],
    }


def test_valid_report_passes():
    validate_report(_valid())


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r.pop("levels"), "levels"),
    (lambda r: r.update(status="done"), "$.status"),
    (lambda r: r["input"].update(size=[512, 640]), "$.input.size"),
    (lambda r: r["timings_s"].update(network=float("nan")), "$.timings_s.network"),
    (lambda r: r["timings_s"].update(network=-1.0), "$.timings_s.network"),
    (lambda r: r["structures"][0].update(kind="organ"), "$.structures[0].kind"),
    (lambda r: r["structures"][0].update(confidence=1.5), "$.structures[0].confidence"),
    (lambda r: r["levels"][0]["grades"]["herniation"].update(grade="2"), "$.levels[0].grades.herniation.grade"),
    (lambda r: r["levels"][0]["measurements"].update(x={"unit": "mm"}), "$.levels[0].measurements.x"),
    (lambda r: r["levels"][0].update(disc_label=True), "$.levels[0].disc_label"),
    (lambda r: r.update(schema_version="0.9"), "$.schema_version"),
])
def test_violations_are_named(mutate, where):
    report = _valid()
    mutate(report)
    with pytest.raises(SchemaError) as info:
        validate_report(report)
    assert any(where in e for e in info.value.errors), info.value.errors


def test_partial_must_name_the_failed_stage_and_complete_must_not():
    report = _valid()
    report["status"] = "partial"
    with pytest.raises(SchemaError, match="failed_stage"):
        validate_report(report)
    report["failed_stage"] = "measure"
    report["error"] = "boom"
    validate_report(report)
    report["status"] = "complete"
    with pytest.raises(SchemaError, match="failed_stage"):
        validate_report(report)


def test_all_errors_are_collected_not_just_the_first():
    report = copy.deepcopy(_valid())
    report["status"] = "?"
    report["model"] = {}
    errors = schema_errors(report, REPORT_SCHEMA)
    assert len(errors) >= 4  # status + name, version, sha256 of the model


def test_schema_document_describes_the_current_version(repo_root):
    text = (repo_root / "docs" / "report-schema.md").read_text()
    assert f"version {SCHEMA_VERSION}" in text
    for key in REPORT_SCHEMA["required"]:
        assert f'"{key}"' in text, key


def _with_issue15_fields(r: dict) -> dict:
    lv = r["levels"][0]
    lv.update(status="found", notes=["a note"], section={"valid": False},
              evidence=[{"kind": "caliper", "measurement": "canal_ap_diameter_mm", "plane": "axial",
                         "label": "AP", "points_lps": [[0, 0, 0], [0, 10, 0]], "slice_index": 3}])
    lv["grades"]["canal_stenosis"] = {"grade": None, "name": "not assessable", "confidence": None,
                                      "status": "not assessable", "reason": "not assessable: needs an axial series",
                                      "confidence_kind": None, "source": None, "predicted": []}
    lv["grades"]["herniation"].update(status="graded", confidence_kind="heuristic", predicted=[
        {"name": "P(SPIDER 'Disc herniation' label)", "value": 0.1, "kind": "calibrated"}])
    return r


def test_issue15_fields_validate():
    validate_report(_with_issue15_fields(_valid()))


@pytest.mark.parametrize("mutate, where", [
    (lambda lv: lv["grades"]["herniation"].update(status="maybe"), "grades.herniation.status"),
    (lambda lv: lv["grades"]["herniation"].update(confidence_kind="guessed"), "grades.herniation.confidence_kind"),
    (lambda lv: lv["grades"]["herniation"]["predicted"][0].update(value=1.2), "predicted[0].value"),
    (lambda lv: lv["evidence"][0].update(kind="arrow"), "evidence[0].kind"),
    (lambda lv: lv["evidence"][0].update(points_lps=[[0, 0]]), "evidence[0].points_lps[0]"),
    (lambda lv: lv.update(status="lost"), "$.levels[0].status"),
])
def test_issue15_violations_are_named(mutate, where):
    report = _with_issue15_fields(_valid())
    mutate(report["levels"][0])
    with pytest.raises(SchemaError) as info:
        validate_report(report)
    assert any(where in e for e in info.value.errors), info.value.errors


def test_the_shipped_schema_file_is_a_valid_draft_2020_12_schema():
    """Issue 12 item 6: report.schema.json is the one source, checked by jsonschema itself."""
    from jsonschema import Draft202012Validator

    from lvp.report.schema import SCHEMA_FILE, SCHEMA_NAME

    assert SCHEMA_FILE.name == "report.schema.json" and SCHEMA_FILE.is_file()
    Draft202012Validator.check_schema(REPORT_SCHEMA)
    assert REPORT_SCHEMA["$id"].endswith(f"/{SCHEMA_NAME}/{SCHEMA_VERSION}")
    # The project's number rule: finite only (standard JSON Schema would accept inf).
    assert schema_errors({"total": float("inf")}, REPORT_SCHEMA["properties"]["timings_s"])
