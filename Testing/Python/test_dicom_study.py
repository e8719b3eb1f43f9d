"""report.json carries the DICOM input's patient/study identity, and nothing for other formats."""

from __future__ import annotations

import json

import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import write_series

from lvp.pipeline import MaskSegmenter, run_inference
from lvp.report.schema import validate_report


@pytest.fixture(scope="module")
def mask_path(sample_case):
    return sample_case.with_name("spider_sample_labels.nii.gz")


def test_dicom_input_identity_in_report(tmp_path, sample_case, mask_path):
    folder = tmp_path / "dcm"
    # A header with an accession number and a person name; no study description (left out).
    write_series(sitk.ReadImage(str(sample_case)), folder, patient_id="P-0042", patient_name="DOE^JANE",
                 accession_number="ACC-778")
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    report = run_inference(folder, tmp_path / "out", segmenter=MaskSegmenter(mask_path), html=False)
    validate_report(report)
    study = json.loads((tmp_path / "out" / "report.json").read_text())["study"]
    assert study["StudyInstanceUID"] == first.StudyInstanceUID
    assert study["SeriesInstanceUID"] == first.SeriesInstanceUID == report["input"]["series_uid"]
    assert study["PatientID"] == "P-0042"
    assert study["PatientName"] == "DOE^JANE"
    assert study["AccessionNumber"] == "ACC-778"
    assert study["StudyDate"] == first.StudyDate and study["SeriesDate"] == first.SeriesDate
    assert "StudyDescription" not in study  # absent from the header: absent from the report


def test_empty_attributes_are_left_out(tmp_path, sample_case, mask_path):
    folder = tmp_path / "dcm"
    write_series(sitk.ReadImage(str(sample_case)), folder)
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.AccessionNumber = ""
        del ds.StudyDate
        ds.save_as(path)
    report = run_inference(folder, tmp_path / "out", segmenter=MaskSegmenter(mask_path), html=False)
    assert "AccessionNumber" not in report["study"] and "StudyDate" not in report["study"]
    assert report["study"]["SeriesDate"]


def test_non_dicom_input_has_no_identity(tmp_path, sample_case, mask_path):
    report = run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask_path), html=False)
    assert "study" not in report
    assert "study" not in json.loads((tmp_path / "out" / "report.json").read_text())


def test_schema_refuses_unknown_identity_fields(tmp_path, sample_case, mask_path):
    from lvp.report.schema import SchemaError

    report = run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask_path), html=False)
    report["study"] = {"PatientID": "x", "PatientBirthDate": "19700101"}
    with pytest.raises(SchemaError, match="PatientBirthDate"):
        validate_report(report)


def test_html_header_shows_the_identity_escaped(tmp_path, sample_case, mask_path):
    folder = tmp_path / "dcm"
    write_series(sitk.ReadImage(str(sample_case)), folder, patient_id="P<7>", patient_name="DOE^JANE",
                 accession_number="ACC-778")
    report = run_inference(folder, tmp_path / "out", segmenter=MaskSegmenter(mask_path))
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<td>Patient</td><td>DOE, JANE</td>" in page
    assert "<td>Patient ID</td><td>P&lt;7&gt;</td>" in page  # escaped, never markup
    assert "<td>Accession</td><td>ACC-778</td>" in page
    date = report["study"]["StudyDate"]
    assert f"<td>Study date</td><td>{date[:4]}-{date[4:6]}-{date[6:]}</td>" in page
    assert report["study"]["StudyInstanceUID"] in page


def test_html_header_absent_without_identity(tmp_path, sample_case, mask_path):
    run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask_path))
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'class="study"' not in page and "<td>Patient</td>" not in page
