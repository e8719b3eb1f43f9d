"""From a DICOM input, lvp infer writes a DICOM SEG and a TID 1500 SR in the input's study.

Real files all the way: the bundled sample written as a DICOM series, the real pipeline (its
reference mask standing in for the network), highdicom/pydicom reading the outputs back, and
dciodvfy (Debian's dicom3tools) validating them against the IODs.
"""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dciodvfy_helpers import dciodvfy_errors
from dicom_writer import write_series

from lvp.labels import SEGMENT_CODES, STRUCTURES
from lvp.pipeline import MaskSegmenter, run_inference


@pytest.fixture(scope="module")
def dicom_run(sample_case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dcm")
    write_series(sitk.ReadImage(str(sample_case)), folder, patient_id="P-0042", patient_name="DOE^JANE",
                 accession_number="ACC-778")
    out = tmp_path_factory.mktemp("out")
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(folder, out, segmenter=MaskSegmenter(mask), html=False)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("*.dcm"))]
    return report, out, sources


def test_outputs_named_in_the_report(dicom_run):
    report, out, _ = dicom_run
    assert report["status"] == "complete", report["error"]
    assert report["outputs"]["dicom_seg"] == "segmentation.dcm"
    assert report["outputs"]["dicom_sr"] == "report.sr.dcm"
    assert json.loads((out / "report.json").read_text())["outputs"] == report["outputs"]


def test_seg_and_sr_pass_dciodvfy(dicom_run):
    _, out, _ = dicom_run
    assert dciodvfy_errors(out / "segmentation.dcm") == []
    assert dciodvfy_errors(out / "report.sr.dcm") == []


def test_dciodvfy_finds_errors_in_a_broken_seg(dicom_run, tmp_path):
    """The validation above can fail: a SEG without its segment sequence is an error."""
    _, out, _ = dicom_run
    ds = pydicom.dcmread(out / "segmentation.dcm")
    del ds.SegmentSequence
    ds.save_as(tmp_path / "broken.dcm")
    assert dciodvfy_errors(tmp_path / "broken.dcm")


def _same_study(ds, src) -> None:
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "StudyDate"):
        assert str(ds.get(keyword)) == str(src.get(keyword)), keyword


def test_seg_frames_equal_the_label_map(dicom_run):
    _, out, sources = dicom_run
    seg = hd.seg.segread(out / "segmentation.dcm")
    src = sources[0]
    _same_study(seg, src)
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert seg.SeriesInstanceUID != src.SeriesInstanceUID
    # Segment number -> LVP label value, by the segment's name and codes.
    by_name = {st.name: value for value, st in STRUCTURES.items()}
    number_to_value = {}
    for item in seg.SegmentSequence:
        value = by_name[item.SegmentLabel]
        codes = STRUCTURES[value].codes
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.type.code
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.category.code
        number_to_value[int(item.SegmentNumber)] = value
    # The label map on the source grid: slice k of segmentation.nii.gz is the k-th source image
    # along the slice normal.
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    iop = np.asarray(src.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ordered = sorted(sources, key=lambda d: float(np.asarray(d.ImagePositionPatient, float) @ normal))
    numbers = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in ordered], combine_segments=True,
        skip_overlap_checks=True)
    lut = np.zeros(256, np.int64)
    for number, value in number_to_value.items():
        lut[number] = value
    np.testing.assert_array_equal(lut[numbers], labels)
    assert set(number_to_value.values()) == set(np.unique(labels)) - {0}


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _code_value(seq) -> str:
    return str(seq[0].get("CodeValue") or seq[0].get("LongCodeValue"))


def _groups(sr) -> dict[str, list]:
    groups = {}
    for item in _walk(sr.ContentSequence):
        if item.ValueType == "CONTAINER" and _code_value(item.ConceptNameCodeSequence) == "125007":
            children = list(item.ContentSequence)
            ident = [c.TextValue for c in children if c.ValueType == "TEXT"
                     and _code_value(c.ConceptNameCodeSequence) == "112039"]
            groups[ident[0]] = children
    return groups


def test_sr_values_equal_report_json(dicom_run):
    report, out, sources = dicom_run
    sr = pydicom.dcmread(out / "report.sr.dcm")
    _same_study(sr, sources[0])
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID \
        == sources[0].SeriesInstanceUID
    groups = _groups(sr)
    found = report["levels"]  # every expected level, found or not
    assert set(groups) == {f"{lv['level']} disc" for lv in found}
    uids = set()
    checked = 0
    for lv in found:
        children = groups[f"{lv['level']} disc"]
        uids |= {c.UID for c in children if c.ValueType == "UIDREF"}
        finding = [c for c in children if c.ValueType == "CODE" and _code_value(c.ConceptNameCodeSequence) == "121071"]
        assert _code_value(finding[0].ConceptCodeSequence) == SEGMENT_CODES[lv["level"]].type.code
        nums = {_code_value(c.ConceptNameCodeSequence): c for c in children if c.ValueType == "NUM"}
        for key, m in lv["measurements"].items():
            if m["value"] is None:
                assert key not in nums
                continue
            item = nums[key]
            mv = item.MeasuredValueSequence[0]
            assert float(mv.NumericValue) == pytest.approx(m["value"], rel=1e-9, abs=1e-12)
            unit = _code_value(mv.MeasurementUnitsCodeSequence)
            assert unit == m["unit"] and mv.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
            coords = [c for c in item.get("ContentSequence", []) if c.ValueType == "SCOORD3D"]
            if m["points_lps"]:
                pts = np.asarray(coords[0].GraphicData, float).reshape(-1, 3)
                np.testing.assert_allclose(pts, m["points_lps"], atol=1e-4)
                assert coords[0].ReferencedFrameOfReferenceUID == sources[0].FrameOfReferenceUID
            checked += 1
        codes = {_code_value(c.ConceptNameCodeSequence): c for c in children if c.ValueType == "CODE"}
        for pathology, grade in lv["grades"].items():
            value = codes[f"grade_{pathology}"].ConceptCodeSequence[0]
            if grade["grade"] is None:
                assert value.CodeMeaning.lower() == str(grade["status"]).lower()
            else:
                assert value.CodeMeaning == grade["name"]
            if grade["confidence"] is None:
                assert f"p_{pathology}" not in nums
            else:
                p = nums[f"p_{pathology}"].MeasuredValueSequence[0]
                assert float(p.NumericValue) == pytest.approx(grade["confidence"], rel=1e-9)
    assert checked > 20
    assert len(uids) == len(found)  # one tracking UID per level


def test_highdicom_reads_the_sr(dicom_run):
    report, out, _ = dicom_run
    sr = hd.sr.srread(out / "report.sr.dcm")
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    levels = {f"{lv['level']} disc": lv for lv in report["levels"]}
    assert set(groups) == set(levels)
    for ident, group in groups.items():
        measured = {m.name.value: m.value for m in group.get_measurements()}
        expected = {k: m["value"] for k, m in levels[ident]["measurements"].items() if m["value"] is not None}
        assert {k: measured[k] for k in expected} == pytest.approx(expected)
        assert len(group.get_qualitative_evaluations()) == len(levels[ident]["grades"])


def test_nifti_input_writes_no_dicom(sample_case, tmp_path):
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, tmp_path / "o", segmenter=MaskSegmenter(mask), html=False)
    assert "dicom_seg" not in report["outputs"] and not (tmp_path / "o" / "segmentation.dcm").exists()


def _run_dicom_case(sample_case, tmp_path, html=False):
    """The sample written as a DICOM series under ``tmp_path/dcm``, run into ``tmp_path/out`` (mask segmenter)."""
    folder = tmp_path / "dcm"
    write_series(sitk.ReadImage(str(sample_case)), folder)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    return run_inference(folder, tmp_path / "out", segmenter=MaskSegmenter(mask), html=html)


def test_partial_report_writes_no_dicom_outputs(sample_case, tmp_path, monkeypatch):
    """A result whose measurement failed is not filed into the PACS: no SEG, no SR."""
    import lvp.pipeline as pipeline

    def broken(volume, lab):  # fault injection: a real stage failure cannot be provoked on demand
        raise ValueError("measurement exploded")

    monkeypatch.setattr(pipeline, "_measure", broken)
    report = _run_dicom_case(sample_case, tmp_path)
    assert report["status"] == "partial" and report["failed_stage"] == "measure"
    assert "dicom_seg" not in report["outputs"] and "dicom_sr" not in report["outputs"]
    assert not list((tmp_path / "out").glob("*.dcm"))


def test_failing_dicom_writer_makes_the_report_partial(sample_case, tmp_path, monkeypatch):
    import lvp.io.dicom_seg as dicom_seg

    def broken(*args, **kwargs):  # fault injection
        raise RuntimeError("SEG encoder exploded")

    monkeypatch.setattr(dicom_seg, "write_dicom_seg", broken)
    report = _run_dicom_case(sample_case, tmp_path)
    assert report["status"] == "partial" and report["failed_stage"] == "dicom"
    assert "SEG encoder exploded" in report["error"]
    assert "dicom_seg" not in report["outputs"] and not list((tmp_path / "out").glob("*.dcm"))


def test_figure_failing_writes_the_sr_once_marked_partial(sample_case, tmp_path, monkeypatch):
    """The figure is drawn before the DICOM stage: a figure failure is known when the SR is written,
    so the SR is written once (no rewrite) and says PARTIAL; the SEG is written as well."""
    import lvp.io.dicom_sr as dicom_sr
    import lvp.report.html as report_html

    def broken(*args, **kwargs):  # fault injection
        raise RuntimeError("figure exploded")

    written = []
    real_sr = dicom_sr.write_dicom_sr

    def counted(report, *args, **kwargs):  # the real writer, its calls and the status it was given counted
        written.append(report["status"])
        return real_sr(report, *args, **kwargs)

    monkeypatch.setattr(report_html, "sagittal_figure_png", broken)
    monkeypatch.setattr(dicom_sr, "write_dicom_sr", counted)
    report = _run_dicom_case(sample_case, tmp_path, html=True)
    assert report["status"] == "partial" and report["failed_stage"] == "figure"
    assert written == ["partial"]
    sr = pydicom.dcmread(tmp_path / "out" / report["outputs"]["dicom_sr"])
    assert sr.CompletionFlag == "PARTIAL"
    assert (tmp_path / "out" / report["outputs"]["dicom_seg"]).is_file()
    assert "figure exploded" in (tmp_path / "out" / report["outputs"]["report_html"]).read_text()
    assert list(report["timings_s"]).index("figure") < list(report["timings_s"]).index("dicom")


def test_a_level_not_found_is_in_the_sr_as_not_found(dicom_run, tmp_path):
    """An expected level that was not found keeps its group: every grade is the finding "Not found"."""
    from lvp.grading import not_found_grade
    from lvp.io.dicom_seg import source_series
    from lvp.io.dicom_sr import write_dicom_sr
    from lvp.scales import PATHOLOGIES

    report, out, _ = dicom_run
    report = json.loads(json.dumps(report))
    missing = report["levels"][-1]
    reason = "not found: the disc is not in the field of view"
    missing.update(center_lps=None, confidence=None, measurements={}, status="not found", evidence=[],
                   grades={p: not_found_grade(reason).to_dict() for p in PATHOLOGIES})
    write_dicom_sr(report, source_series({"format": "dicom", "path": report["input"]["path"],
                                                 "series_uid": report["input"]["series_uid"]}), tmp_path / "sr.dcm")
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
    children = _groups(pydicom.dcmread(tmp_path / "sr.dcm"))[f"{missing['level']} disc"]
    assert not [c for c in children if c.ValueType == "NUM"]
    codes = {_code_value(c.ConceptNameCodeSequence): c for c in children if c.ValueType == "CODE"}
    values = {k: c.ConceptCodeSequence[0].CodeMeaning for k, c in codes.items() if k.startswith("grade_")}
    assert values == {f"grade_{p}": "Not found" for p in PATHOLOGIES}


def test_source_series_reads_each_frame_position_once(dicom_run, monkeypatch):
    """The frames' positions are gathered once per source data set (an enhanced image's per-frame
    sequence is long: once per frame would make the SEG's frame order quadratic in the frames)."""
    import lvp.io.dicom_seg as dicom_seg

    _, _, sources = dicom_run
    calls = []
    real = dicom_seg._frame_positions
    monkeypatch.setattr(dicom_seg, "_frame_positions", lambda ds: calls.append(ds) or real(ds))
    source = dicom_seg.source_series({"format": "dicom", "dicom_headers": sources})
    assert len(calls) == len(sources)
    normal = np.cross(np.asarray(sources[0].ImageOrientationPatient, float)[:3],
                      np.asarray(sources[0].ImageOrientationPatient, float)[3:])
    heights = [float(np.asarray(ds.ImagePositionPatient, float) @ normal) for ds in sources]
    assert [source.slice_of_frame[(d, 0)] for d in range(len(sources))] == list(np.argsort(np.argsort(heights)))
