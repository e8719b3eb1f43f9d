"""The .seg.nrrd carries Slicer's "Reference image geometry": export-to-labelmap gives the source grid.

Checked with Slicer's own segmentation storage node and export logic (slicer-core): without the
geometry, Slicer's export crops to the segments' bounding box.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from lvp.io.seg_nrrd import reference_image_geometry, write_seg_nrrd


@pytest.fixture(scope="module")
def labels_image(sample_case) -> sitk.Image:
    """The sample's reference mask as LVP output values (vertebra→L1, disc→L1-L2, canal) on its own grid."""
    mask = sitk.ReadImage(str(sample_case.with_name("spider_sample_labels.nii.gz")))
    arr = sitk.GetArrayFromImage(mask)
    lut = np.zeros(256, np.uint8)
    lut[1], lut[2], lut[3] = 41, 92, 2
    img = sitk.GetImageFromArray(lut[arr])
    img.CopyInformation(mask)
    return img


def _export(path, mode_name: str):
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    seg.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    assert storage.ReadData(seg)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert logic.ExportAllSegmentsToLabelmapNode(seg, labelmap, getattr(slicer.vtkSegmentation, mode_name))
    image = labelmap.GetImageData()
    dims = image.GetDimensions()
    arr = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    names = [seg.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(seg.GetSegmentation().GetNumberOfSegments())]
    return dims, arr, ijk_to_ras, names, seg.GetSegmentation().GetConversionParameter("Reference image geometry")


def _ijk_to_ras(image: sitk.Image) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    m[:3, 3] = image.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ m


def test_export_to_labelmap_gives_the_source_grid(tmp_path, labels_image):
    path = tmp_path / "s.seg.nrrd"
    write_seg_nrrd(labels_image, path)
    dims, arr, ijk_to_ras, names, geometry = _export(path, "EXTENT_REFERENCE_GEOMETRY")
    assert geometry == reference_image_geometry(labels_image)
    assert dims == labels_image.GetSize()
    np.testing.assert_allclose(ijk_to_ras, _ijk_to_ras(labels_image), atol=1e-6)
    # Every voxel in place: Slicer numbers the exported segments 1..N in segment order.
    src = sitk.GetArrayFromImage(labels_image)
    values = sorted(set(np.unique(src).tolist()) - {0})
    expected = np.zeros_like(src)
    for number, value in enumerate(values, start=1):
        expected[src == value] = number
    assert names == ["spinal canal", "L1", "L1-L2 disc"]
    np.testing.assert_array_equal(arr, expected)


def test_union_extent_still_crops(tmp_path, labels_image):
    """What the reference geometry changes: the union-of-segments export is the bounding box."""
    path = tmp_path / "s.seg.nrrd"
    write_seg_nrrd(labels_image, path)
    dims, *_ = _export(path, "EXTENT_UNION_OF_SEGMENTS")
    assert np.prod(dims) < np.prod(labels_image.GetSize())


def test_geometry_string_format(labels_image):
    text = reference_image_geometry(labels_image)
    assert text.endswith(";")
    numbers = [float(v) for v in text.rstrip(";").split(";")]
    assert len(numbers) == 22
    np.testing.assert_allclose(np.reshape(numbers[:16], (4, 4)), _ijk_to_ras(labels_image), atol=1e-9)
    size = labels_image.GetSize()
    assert numbers[16:] == [0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1]
