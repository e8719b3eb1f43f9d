"""lvp infer against a real DICOMweb server: a throwaway Orthanc started by .ci/start-orthanc.sh.

A study with a sagittal T1 and a sagittal T2 series is uploaded (STOW-RS); ``lvp infer
dicomweb+URL --study UID --store`` must pick the T2 series (QIDO-RS + WADO-RS metadata), fetch
it (WADO-RS), run, and store the SEG and SR back (STOW-RS); they are queried back from Orthanc
and checked against the label map and report.json. Skips when LVP_TEST_ORTHANC_URL is unset
(.ci/run always sets it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import seg_label_values, write_series
from pydicom.uid import generate_uid

from lvp.cli import main
from lvp.errors import InputError
from lvp.io.dicomweb import server_url

URL = os.environ.get("LVP_TEST_ORTHANC_URL")
needs_orthanc = pytest.mark.skipif(not URL, reason="no Orthanc (LVP_TEST_ORTHANC_URL unset; .ci/run starts one)")


def test_address_parsing_and_refusals():
    assert server_url("dicomweb+http://127.0.0.1:8042/dicom-web/") == "http://127.0.0.1:8042/dicom-web"
    assert server_url("dicomweb+https://pacs.example/dicom-web") == "https://pacs.example/dicom-web"
    with pytest.raises(InputError) as err:
        server_url("dicomweb+http://bob:hunter2@pacs.example/dicom-web")
    assert "hunter2" not in str(err.value) and "LVP_DICOMWEB_PASSWORD" in str(err.value)
    with pytest.raises(InputError, match="not a DICOMweb address"):
        server_url("http://pacs.example/dicom-web")


def test_credentials_come_from_the_environment(monkeypatch):
    from lvp.io.dicomweb import client

    monkeypatch.delenv("LVP_DICOMWEB_USER", raising=False)
    monkeypatch.delenv("LVP_DICOMWEB_PASSWORD", raising=False)
    monkeypatch.setenv("LVP_DICOMWEB_TOKEN", "tok-123")
    session = client("http://127.0.0.1:9/dicom-web")._session
    assert session.headers["Authorization"] == "Bearer tok-123" and session.auth is None
    monkeypatch.delenv("LVP_DICOMWEB_TOKEN")
    monkeypatch.setenv("LVP_DICOMWEB_USER", "reader")
    with pytest.raises(InputError, match="set both LVP_DICOMWEB_USER and LVP_DICOMWEB_PASSWORD"):
        client("http://127.0.0.1:9/dicom-web")
    monkeypatch.setenv("LVP_DICOMWEB_PASSWORD", "pw")
    assert client("http://127.0.0.1:9/dicom-web")._session.auth == ("reader", "pw")


def test_unreachable_server_is_named_without_a_traceback(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LVP_DICOMWEB_USER", "reader")
    monkeypatch.setenv("LVP_DICOMWEB_PASSWORD", "secret-pw-42")
    code = main(["infer", f"dicomweb+http://127.0.0.1:{port}/dicom-web", "--study", "1.2.3", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be reached" in err and "secret-pw-42" not in err and "Traceback" not in err


def test_study_without_dicomweb_input_is_refused(sample_case, tmp_path, capsys):
    code = main(["infer", str(sample_case), "--study", "1.2.3", "-o", str(tmp_path / "o")])
    assert code == 2 and "--study" in capsys.readouterr().err


@pytest.fixture()
def credentials(monkeypatch):
    monkeypatch.setenv("LVP_DICOMWEB_USER", os.environ.get("LVP_TEST_ORTHANC_USER", ""))
    monkeypatch.setenv("LVP_DICOMWEB_PASSWORD", os.environ.get("LVP_TEST_ORTHANC_PASSWORD", ""))
    monkeypatch.delenv("LVP_DICOMWEB_TOKEN", raising=False)
    return os.environ.get("LVP_TEST_ORTHANC_PASSWORD", "")


def _client():
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = (os.environ["LVP_TEST_ORTHANC_USER"], os.environ["LVP_TEST_ORTHANC_PASSWORD"])
    return DICOMwebClient(url=URL, session=session)


@pytest.fixture(scope="module")
def uploaded(sample_case, tmp_path_factory):
    """A study with SAG T1 and SAG T2 series of the sample, stored in Orthanc."""
    if not URL:
        pytest.skip("no Orthanc")
    image = sitk.ReadImage(str(sample_case))
    t2 = tmp_path_factory.mktemp("t2")
    t1 = tmp_path_factory.mktemp("t1")
    t2_uid = write_series(image, t2, series_description="SAG T2 TSE", patient_id="P-DW-1")
    write_series(image, t1, series_description="SAG T1 TSE", patient_id="P-DW-1", echo_time=12,
                       repetition_time=500)
    study_uid, frame_uid = generate_uid(), generate_uid()
    datasets = []
    for folder in (t2, t1):
        for path in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.FrameOfReferenceUID = study_uid, frame_uid
            ds.PatientName = "DICOMWEB^TEST"
            ds.save_as(path)
            datasets.append(ds)
    _client().store_instances(datasets=datasets)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(t2.glob("*.dcm"))]
    return study_uid, t2_uid, sources


@needs_orthanc
def test_infer_from_orthanc_and_store_seg_and_sr(uploaded, credentials, sample_case, tmp_path, capsys):
    import highdicom as hd

    study_uid, t2_uid, sources = uploaded
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    out = tmp_path / "out"
    code = main(["infer", f"dicomweb+{URL}", "--study", study_uid, "--store", "--semantic", str(mask),
                 "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert credentials not in printed.out + printed.err + (out / "report.json").read_text()
    assert f"series {t2_uid}" in printed.err and "stored on" in printed.err
    report = json.loads((out / "report.json").read_text())
    assert report["study"]["StudyInstanceUID"] == study_uid
    assert report["study"]["SeriesInstanceUID"] == t2_uid  # the T2 series, not the T1 one
    # The downloaded images were temporary.
    assert not os.path.exists(report["input"]["path"])

    client = _client()
    series = {pydicom.Dataset.from_json(s).Modality: pydicom.Dataset.from_json(s).SeriesInstanceUID
              for s in client.search_for_series(study_uid)}
    assert {"MR", "SEG", "SR"} <= set(series)
    (seg_ds,) = client.retrieve_series(study_uid, series["SEG"])
    seg = hd.seg.Segmentation.from_dataset(seg_ds)
    assert seg.PatientID == "P-DW-1" and str(seg.PatientName) == "DICOMWEB^TEST"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t2_uid
    # SEG frames as stored in Orthanc equal the label map written beside report.json.
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    iop = np.asarray(sources[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ordered = sorted(sources, key=lambda d: float(np.asarray(d.ImagePositionPatient, float) @ normal))
    numbers = seg.get_pixels_by_source_instance(source_sop_instance_uids=[d.SOPInstanceUID for d in ordered],
                                                combine_segments=True, skip_overlap_checks=True)
    np.testing.assert_array_equal(seg_label_values(seg, numbers), labels)
    # The SR as stored: each level's measurements equal report.json.
    (sr_ds,) = client.retrieve_series(study_uid, series["SR"])
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_ds)
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    found = report["levels"]  # every expected level, found or not
    assert set(groups) == {f"{lv['level']} disc" for lv in found}
    for lv in found:
        measured = {m.name.value: m.value for m in groups[f"{lv['level']} disc"].get_measurements()}
        for key, m in lv["measurements"].items():
            if m["value"] is not None:
                assert measured[key] == pytest.approx(m["value"])


@needs_orthanc
def test_wrong_password_is_a_clear_error_without_the_secret(uploaded, monkeypatch, tmp_path, capsys):
    study_uid, _, _ = uploaded
    monkeypatch.setenv("LVP_DICOMWEB_USER", os.environ["LVP_TEST_ORTHANC_USER"])
    monkeypatch.setenv("LVP_DICOMWEB_PASSWORD", "not-the-password-xyz")
    code = main(["infer", f"dicomweb+{URL}", "--study", study_uid, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "HTTP 401" in err and "LVP_DICOMWEB_USER" in err
    assert "not-the-password-xyz" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@needs_orthanc
def test_unknown_study_is_refused(credentials, tmp_path, capsys):
    code = main(["infer", f"dicomweb+{URL}", "--study", generate_uid(), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no series in study" in err


@needs_orthanc
def test_named_series_is_fetched_whole(uploaded, credentials, tmp_path):
    """--series picks another series of the study (here the T1), fetched with every instance."""
    from lvp.io.dicomweb import fetch_series

    study_uid, t2_uid, sources = uploaded
    series = {pydicom.Dataset.from_json(s).SeriesDescription: pydicom.Dataset.from_json(s).SeriesInstanceUID
              for s in _client().search_for_series(study_uid)}
    t1_uid = series["SAG T1 TSE"]
    uid, count = fetch_series(server_url(f"dicomweb+{URL}"), study_uid, tmp_path / "t1", t1_uid)
    files = sorted((tmp_path / "t1").glob("*.dcm"))
    assert uid == t1_uid != t2_uid and count == len(files) == len(sources)
    assert {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files} == {t1_uid}
    with pytest.raises(InputError, match=f"is not in study {study_uid}"):
        fetch_series(server_url(f"dicomweb+{URL}"), study_uid, tmp_path / "x", generate_uid())


def test_case_reference_parsing(tmp_path):
    from lvp.io.dicomweb import case_folder, parse_case_ref

    ref = "dicomweb+http://127.0.0.1:8042/dicom-web/?study=1.2.3&series=4.5.6"
    assert parse_case_ref(ref) == ("http://127.0.0.1:8042/dicom-web", "1.2.3", "4.5.6")
    assert case_folder(ref, tmp_path) == case_folder(ref, tmp_path)
    assert case_folder(ref, tmp_path) != case_folder(ref.replace("4.5.6", "4.5.7"), tmp_path)
    with pytest.raises(InputError, match="names its study"):
        case_folder("dicomweb+http://127.0.0.1:8042/dicom-web", tmp_path)


@needs_orthanc
def test_cli_takes_the_study_from_the_address(uploaded, credentials, sample_case, tmp_path, capsys):
    study_uid, t2_uid, _ = uploaded
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    code = main(["infer", f"dicomweb+{URL}?study={study_uid}", "--semantic", str(mask), "-o", str(tmp_path / "o"),
                 "--no-html"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "report.json").read_text())["study"]["SeriesInstanceUID"] == t2_uid


@needs_orthanc
def test_slicer_worklist_loads_a_case_from_the_server(uploaded, credentials, tmp_path, monkeypatch):
    """A reading-study case whose image is a DICOMweb reference: fetched once, loaded as a DICOM folder."""
    import slicer_helpers  # noqa: F401 - puts the Slicer module folder on sys.path

    from LumbarVNetProLib.reading import ReadingError
    from LumbarVNetProLib.workflow import load_case_image, result_dir_for
    from lvp.io.read import read_volume

    study_uid, t2_uid, _ = uploaded
    monkeypatch.setenv("LVP_DICOMWEB_CACHE", str(tmp_path / "cache"))
    ref = f"dicomweb+{URL}?study={study_uid}"
    loaded = []

    def load_dicom(folder):  # what Slicer's DICOM import gets: a local folder of the series
        loaded.append(folder)
        return read_volume(folder)

    volume = load_case_image(ref, lambda p: pytest.fail("not a file"), load_dicom)
    assert volume.meta["series_uid"] == t2_uid and volume.meta["study"]["StudyInstanceUID"] == study_uid
    folder = Path(loaded[0])
    assert folder.is_relative_to(tmp_path / "cache")
    assert result_dir_for(ref) == folder.parent / (folder.name + ".lvp")
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    load_case_image(ref, lambda p: None, load_dicom)  # opened again: the cached series, not a new download
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    with pytest.raises(ReadingError, match="no series in study"):
        load_case_image(f"dicomweb+{URL}?study={generate_uid()}", lambda p: None, load_dicom)
