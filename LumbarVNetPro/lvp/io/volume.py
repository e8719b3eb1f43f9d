"""A 3-D image in LVP's canonical orientation, with the exact way back to its source grid.

Canonical orientation: the numpy array is indexed ``[lr, si, ap]`` where

* axis 0 runs towards the patient's **left**,
* axis 1 runs towards **inferior** (so ``array[k]`` shows a sagittal slice with the head up),
* axis 2 runs towards **posterior** (anterior on the left of the displayed slice).

In ITK / DICOM terms this is the orientation code ``PIL`` (x → P, y → I, z → L) with the numpy
axes in ``(z, y, x)`` order. Physical coordinates are **LPS** millimetres (ITK and DICOM);
Slicer's RAS is ``(-x, -y, z)``.

Only axis permutations and flips are applied (never interpolation), so any label array on the
canonical grid maps back onto the source voxels exactly (:meth:`Volume.to_source_array`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from lvp.errors import InputError

# Canonical numpy axis m points along LPS component CANON_COMPONENT[m] with sign CANON_SIGN[m].
CANON_COMPONENT = (0, 2, 1)  # L, I(=-S), P
CANON_SIGN = (1, -1, 1)
AXIS_NAMES = ("left-right", "superior-inferior", "anterior-posterior")


@dataclass(frozen=True)
class SourceGeometry:
    """The source image's grid and the permutation/flips that made the canonical array."""

    size: tuple[int, int, int]  # ITK order (x, y, z)
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # row-major 3x3, columns are the index axes
    perm: tuple[int, int, int]  # canonical numpy axis m is source numpy axis perm[m]
    flip: tuple[bool, bool, bool]  # canonical numpy axis m was flipped


@dataclass
class Volume:
    """An image in canonical orientation (see module docstring)."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # mm along the numpy axes (lr, si, ap)
    affine: np.ndarray  # 4x4: canonical numpy index (lr, si, ap) -> LPS mm
    source: SourceGeometry
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(lr, si, ap)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Field of view in mm along (lr, si, ap)."""
        return tuple(float(n * s) for n, s in zip(self.array.shape, self.spacing))  # type: ignore[return-value]

    def index_to_lps(self, index: np.ndarray) -> np.ndarray:
        """Map canonical (continuous) indices ``(..., 3)`` to LPS millimetres."""
        idx = np.asarray(index, dtype=float)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_index(self, points: np.ndarray) -> np.ndarray:
        """Map LPS millimetres ``(..., 3)`` to canonical continuous indices."""
        inv = np.linalg.inv(self.affine)
        pts = np.asarray(points, dtype=float)
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def with_array(self, array: np.ndarray) -> Volume:
        """A volume on the same grid holding ``array`` (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return Volume(array, self.spacing, self.affine.copy(), self.source, dict(self.meta))

    def to_source_array(self, array: np.ndarray | None = None, dtype: np.dtype | type | None = None) -> np.ndarray:
        """Undo the canonical permutation/flips: the array on the source grid (SimpleITK order).

        ``dtype``: convert in the same pass (one new array, no intermediate copy; values are cast
        as ``astype`` casts them).
        """
        arr = self.array if array is None else array
        if arr.shape != self.array.shape:
            raise ValueError(f"array shape {arr.shape} differs from the volume's {self.array.shape}")
        for m, flipped in enumerate(self.source.flip):
            if flipped:
                arr = np.flip(arr, axis=m)
        view = np.transpose(arr, np.argsort(self.source.perm))
        if dtype is None or np.dtype(dtype) == view.dtype:
            return np.ascontiguousarray(view)
        out = np.empty(view.shape, dtype)
        np.copyto(out, view, casting="unsafe")
        return out

    def to_source_image(self, array: np.ndarray | None = None, dtype: np.dtype | type | None = None) -> sitk.Image:
        """A SimpleITK image with the source geometry holding ``array`` mapped back exactly.

        ``dtype`` converts on the way (see :meth:`to_source_array`).
        """
        img = sitk.GetImageFromArray(self.to_source_array(array, dtype))
        img.SetSpacing(self.source.spacing)
        img.SetOrigin(self.source.origin)
        img.SetDirection(self.source.direction)
        return img

    def to_sitk(self, array: np.ndarray | None = None) -> sitk.Image:
        """A SimpleITK image of the canonical grid (physically the same voxels as the source)."""
        arr = self.array if array is None else array
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        # numpy (lr, si, ap) = ITK (z, y, x): ITK axis x is numpy axis 2, etc.
        cols = [self.affine[:3, 2 - i] / self.spacing[2 - i] for i in range(3)]
        img.SetSpacing(tuple(float(self.spacing[2 - i]) for i in range(3)))
        img.SetOrigin(tuple(float(v) for v in self.affine[:3, 3]))
        img.SetDirection(tuple(float(v) for v in np.stack(cols, axis=1).ravel()))
        return img


def _axis_mapping(direction: np.ndarray) -> tuple[list[int], list[int]]:
    """Dominant LPS component and its sign for each ITK index axis; refuse ambiguous obliques."""
    comps, signs = [], []
    for i in range(3):
        col = direction[:, i]
        c = int(np.argmax(np.abs(col)))
        comps.append(c)
        signs.append(1 if col[c] > 0 else -1)
    if len(set(comps)) != 3:
        raise InputError(
            "the image axes are oblique by about 45 degrees to the patient axes, so its orientation "
            "(sagittal / axial / coronal) cannot be told; reformat it to a sagittal series first"
        )
    return comps, signs


def canonical_volume(image: sitk.Image, meta: dict | None = None) -> Volume:
    """Bring a 3-D SimpleITK image to canonical orientation without resampling.

    ``image`` may also be anything answering the same geometry questions with an ``array``
    attribute in ITK's (z, y, x) order (:class:`lvp.io.read.ImageGeometry`).
    """
    if image.GetDimension() != 3:
        raise InputError(f"the image has {image.GetDimension()} dimensions; LVP needs a 3-D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"the image has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or "
            "vector data); LVP needs a grey-scale MR volume"
        )
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=float)
    origin = np.array(image.GetOrigin(), dtype=float)
    size = image.GetSize()
    comps, signs = _axis_mapping(direction)
    # numpy axes (z, y, x) = ITK axes (2, 1, 0). An image LVP decompressed itself
    # (lvp.io.read.ImageGeometry) brings its own array, which the volume may keep without a copy.
    own = getattr(image, "array", None)
    src = own if own is not None else sitk.GetArrayViewFromImage(image)

    perm, flip = [], []
    index_map = np.zeros((3, 3))  # ITK source index = index_map @ canonical index + offset
    offset = np.zeros(3)
    for m in range(3):
        itk_axis = comps.index(CANON_COMPONENT[m])
        perm.append(2 - itk_axis)
        flipped = signs[itk_axis] != CANON_SIGN[m]
        flip.append(flipped)
        if flipped:
            index_map[itk_axis, m] = -1.0
            offset[itk_axis] = size[itk_axis] - 1
        else:
            index_map[itk_axis, m] = 1.0
    arr = np.transpose(src, perm)
    for m, flipped in enumerate(flip):
        if flipped:
            arr = np.flip(arr, axis=m)
    # Copy a view into a SimpleITK buffer (it dies with the image); an own array only when the
    # permutation or flips made it non-contiguous.
    arr = np.ascontiguousarray(arr) if own is not None else np.array(arr, order="C", copy=True)

    src_affine = direction @ np.diag(spacing)
    affine = np.eye(4)
    affine[:3, :3] = src_affine @ index_map
    affine[:3, 3] = origin + src_affine @ offset
    canon_spacing = tuple(float(spacing[comps.index(CANON_COMPONENT[m])]) for m in range(3))
    source = SourceGeometry(
        size=tuple(int(s) for s in size),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        origin=tuple(float(o) for o in origin),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in direction.ravel()),
        perm=tuple(perm),  # type: ignore[arg-type]
        flip=tuple(flip),  # type: ignore[arg-type]
    )
    return Volume(arr, canon_spacing, affine, source, dict(meta or {}))  # type: ignore[arg-type]
