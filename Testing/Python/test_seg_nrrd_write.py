"""The Slicer segmentation writer: header fields, round trip, and Slicer's own reader."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from seg_nrrd_reader import read_seg_nrrd

from lvp.io.seg_nrrd import parse_terminology_entry, terminology_entry, write_seg_nrrd
from lvp.labels import STRUCTURES, VERTEBRA_LABELS, Coding


@pytest.fixture(scope="module")
def label_image(sample_case) -> sitk.Image:
    """The sample's reference mask with TotalSpineSeg values (vertebra→L3, disc→L3-L4, canal)."""
    ref = sitk.ReadImage(str(sample_case).replace("_t2.nii.gz", "_labels.nii.gz"))
    a = sitk.GetArrayFromImage(ref)
    out = np.zeros_like(a)
    out[a == 1] = 43
    out[a == 2] = 94
    out[a == 3] = 2
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(ref)
    return img


def test_round_trip_keeps_voxels_geometry_and_segments(label_image, tmp_path):
    path = tmp_path / "s.seg.nrrd"
    written = write_seg_nrrd(label_image, path)
    image, segments = read_seg_nrrd(path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(label_image))
    np.testing.assert_allclose(image.GetOrigin(), label_image.GetOrigin())
    np.testing.assert_allclose(image.GetDirection(), label_image.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(image.GetSpacing(), label_image.GetSpacing())
    assert [s["label_value"] for s in segments] == [2, 43, 94] == [s["label_value"] for s in written]
    arr = sitk.GetArrayViewFromImage(label_image)
    for seg in segments:
        st = STRUCTURES[seg["label_value"]]
        assert seg["name"] == st.name
        assert seg["color"] == pytest.approx(st.color, abs=1e-5)
        z, y, x = np.nonzero(arr == seg["label_value"])
        assert seg["extent"] == (x.min(), x.max(), y.min(), y.max(), z.min(), z.max())
        term = parse_terminology_entry(seg["terminology"])
        assert term["type"]["code"] == st.coding.code
        assert term["category"]["code"] == "91723000"  # CID 7150 Anatomical Structure


def test_terminology_string_has_slicers_seven_parts():
    text = terminology_entry(Coding("66794005", "L1 vertebra"))
    parts = text.split("~")
    assert len(parts) == 7
    assert parts[2] == "SCT^66794005^L1 vertebra"
    assert parse_terminology_entry(text)["type_modifier"] is None
    with pytest.raises(ValueError):
        parse_terminology_entry("SCT^1^a~SCT^2^b")


def test_unknown_label_value_is_refused(tmp_path):
    img = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    img[1, 1, 1] = 7  # not an LVP output value
    with pytest.raises(ValueError, match="7"):
        write_seg_nrrd(img, tmp_path / "bad.seg.nrrd")


def test_slicer_reads_segments_names_and_voxels(label_image, tmp_path):
    import slicer
    import vtk
    from vtk.util import numpy_support

    path = tmp_path / "s.seg.nrrd"
    image = label_image
    # Add a second vertebra so two segments share the layer with different label values.
    arr = sitk.GetArrayFromImage(image)
    arr[:, :40][arr[:, :40] == 43] = VERTEBRA_LABELS["L2"]
    two = sitk.GetImageFromArray(arr)
    two.CopyInformation(image)
    write_seg_nrrd(two, path)

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    seg = node.GetSegmentation()
    found = {}
    for i in range(seg.GetNumberOfSegments()):
        s = seg.GetNthSegment(i)
        tag = vtk.mutable("")
        s.GetTag("TerminologyEntry", tag)
        found[s.GetLabelValue()] = (s.GetName(), tuple(s.GetColor()), str(tag))
    assert set(found) == {2, 42, 43, 94}
    assert found[42][0] == "L2" and found[94][0] == "L3-L4 disc"
    assert found[2][1] == pytest.approx(STRUCTURES[2].color)
    assert "SCT^14293000^L2 vertebra" in found[42][2]  # DICOM PS3.16 CID 7603
    # Voxel counts per label survive Slicer's reading of the shared layer.
    lm = seg.GetNthSegment(0).GetRepresentation("Binary labelmap")
    values = numpy_support.vtk_to_numpy(lm.GetPointData().GetScalars())
    for value in (2, 42, 43, 94):
        assert np.count_nonzero(values == value) == np.count_nonzero(arr == value)
    # Slicer works in RAS: its image-to-world matrix is the LPS geometry with x and y negated.
    m = vtk.vtkMatrix4x4()
    lm.GetImageToWorldMatrix(m)
    ext = lm.GetExtent()
    ijk = (ext[1], ext[3], ext[5])
    ras = m.MultiplyPoint((*ijk, 1.0))[:3]
    lps = two.TransformIndexToPhysicalPoint(ijk)
    assert ras == pytest.approx((-lps[0], -lps[1], lps[2]), abs=1e-3)
