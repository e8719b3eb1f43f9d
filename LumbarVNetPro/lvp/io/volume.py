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

    def source_view(self, canonical: np.ndarray) -> np.ndarray:
        """A view of a canonical array indexed like the source array (SimpleITK (z, y, x) order).

        The flips and the permutation undone, no copy: reading it gives the source voxels,
        writing it fills the canonical array in source order.
        """
        view = canonical
        for m, flipped in enumerate(self.flip):
            if flipped:
                view = np.flip(view, axis=m)
        return np.transpose(view, np.argsort(self.perm))


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
        view = self.source.source_view(arr)
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


@dataclass(frozen=True)
class CanonicalLayout:
    """How a source image's numpy array ``(z, y, x)`` becomes the canonical one, and its geometry."""

    perm: tuple[int, int, int]  # canonical numpy axis m is source numpy axis perm[m]
    flip: tuple[bool, bool, bool]  # canonical numpy axis m is flipped
    affine: np.ndarray
    spacing: tuple[float, float, float]
    source: SourceGeometry

    def shape(self, source_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Canonical array shape for a source array of ``source_shape`` (numpy order)."""
        return tuple(int(source_shape[p]) for p in self.perm)  # type: ignore[return-value]

    def source_view(self, canonical: np.ndarray) -> np.ndarray:
        """A view of a canonical array indexed like the source array (for filling it in source order)."""
        return self.source.source_view(canonical)


def canonical_layout(direction: tuple[float, ...], spacing: tuple[float, ...], origin: tuple[float, ...],
                     size: tuple[int, ...]) -> CanonicalLayout:
    """The canonical layout of a 3-D image with this ITK geometry (``size`` in ITK order x, y, z)."""
    direction_m = np.array(direction, dtype=float).reshape(3, 3)
    spacing_v = np.array(spacing, dtype=float)
    origin_v = np.array(origin, dtype=float)
    comps, signs = _axis_mapping(direction_m)
    perm, flip = [], []
    index_map = np.zeros((3, 3))  # ITK source index = index_map @ canonical index + offset
    offset = np.zeros(3)
    for m in range(3):
        itk_axis = comps.index(CANON_COMPONENT[m])
        perm.append(2 - itk_axis)  # numpy axes (z, y, x) = ITK axes (2, 1, 0)
        flipped = signs[itk_axis] != CANON_SIGN[m]
        flip.append(flipped)
        if flipped:
            index_map[itk_axis, m] = -1.0
            offset[itk_axis] = size[itk_axis] - 1
        else:
            index_map[itk_axis, m] = 1.0
    src_affine = direction_m @ np.diag(spacing_v)
    affine = np.eye(4)
    affine[:3, :3] = src_affine @ index_map
    affine[:3, 3] = origin_v + src_affine @ offset
    canon_spacing = tuple(float(spacing_v[comps.index(CANON_COMPONENT[m])]) for m in range(3))
    source = SourceGeometry(
        size=tuple(int(s) for s in size),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in spacing_v),  # type: ignore[arg-type]
        origin=tuple(float(o) for o in origin_v),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in direction_m.ravel()),
        perm=tuple(perm),  # type: ignore[arg-type]
        flip=tuple(flip),  # type: ignore[arg-type]
    )
    return CanonicalLayout(tuple(perm), tuple(flip), affine, canon_spacing, source)  # type: ignore[arg-type]


class _ItkPixels:
    """Lends a SimpleITK image's pixel buffer to numpy and keeps the image alive while it is used."""

    def __init__(self, image: sitk.Image) -> None:
        self.image = image
        interface = dict(sitk.GetArrayViewFromImage(image).__array_interface__)
        # The buffer is the image's own (GetArrayViewFromImage made it unique), so writable.
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def flip_in_place(array: np.ndarray, axes: tuple[int, ...]) -> None:
    """Reverse a C-contiguous 3-D array along ``axes`` without a second full-size copy.

    Axis 0 by swapping whole slices; axes 1 and 2 one slice at a time (one slice of scratch).
    """
    if 0 in axes:
        n = array.shape[0]
        scratch = np.empty_like(array[0])
        for i in range(n // 2):
            j = n - 1 - i
            scratch[...] = array[i]
            array[i] = array[j]
            array[j] = scratch
    inner = tuple(a - 1 for a in axes if a != 0)
    if inner:
        for k in range(array.shape[0]):
            array[k] = np.flip(array[k], axis=inner).copy()


class ArrayImage:
    """A 3-D image LVP decoded itself: its voxels and geometry, without a SimpleITK copy of them.

    Answers the few ``sitk.Image`` questions :func:`canonical_volume` asks and hands it ``array``,
    which the volume then takes over: in ITK's (z, y, x) order, or, with ``canonical=True``,
    already in canonical order (``canonical_array``, taken as is). ``size`` is the ITK size
    (x, y, z) the geometry refers to; by default the reverse of ``array``'s shape.
    """

    def __init__(self, array: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...],
                 direction: tuple[float, ...], *, size: tuple[int, ...] | None = None,
                 canonical: bool = False) -> None:
        self.array = array
        self.canonical_array = array if canonical else None
        self._size = tuple(int(n) for n in (size if size is not None else array.shape[::-1]))
        self._spacing = tuple(float(v) for v in spacing)
        self._origin = tuple(float(v) for v in origin)
        self._direction = tuple(float(v) for v in direction)

    def GetDimension(self) -> int:  # the sitk.Image names
        return 3

    def GetNumberOfComponentsPerPixel(self) -> int:
        return 1

    def GetSize(self) -> tuple[int, ...]:
        return self._size

    def GetSpacing(self) -> tuple[float, ...]:
        return self._spacing

    def GetOrigin(self) -> tuple[float, ...]:
        return self._origin

    def GetDirection(self) -> tuple[float, ...]:
        return self._direction


def canonical_volume(image: sitk.Image, meta: dict | None = None, *, consume: bool = False) -> Volume:
    """Bring a 3-D SimpleITK image to canonical orientation without resampling.

    ``image`` may also be anything answering the same geometry questions with an ``array``
    attribute in ITK's (z, y, x) order (an :class:`ArrayImage`, as LVP's NIfTI and DICOM readers
    make), or a ``canonical_array`` already in canonical order. ``consume=True``: the caller hands the image over
    (a reader's), so its pixel buffer may become the volume's array and be reordered in place;
    a file stored in canonical axis order then costs no second copy, even with flipped axes.
    """
    if image.GetDimension() != 3:
        raise InputError(f"the image has {image.GetDimension()} dimensions; LVP needs a 3-D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"the image has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or "
            "vector data); LVP needs a grey-scale MR volume"
        )
    layout = canonical_layout(image.GetDirection(), image.GetSpacing(), image.GetOrigin(), image.GetSize())
    placed = getattr(image, "canonical_array", None)
    if placed is not None:
        arr = placed
    else:
        arr = _arrange(image, layout, consume)
    return Volume(arr, layout.spacing, layout.affine, layout.source, dict(meta or {}))


def _arrange(image: sitk.Image, layout: CanonicalLayout, consume: bool) -> np.ndarray:
    """The canonical array of ``image``'s voxels (see :func:`canonical_volume`)."""
    perm, flip = layout.perm, layout.flip
    # An image LVP decoded itself brings its own array, which the volume may keep without a copy.
    own = getattr(image, "array", None)
    if consume and perm == (0, 1, 2):
        # The reader's buffer becomes the volume's array; flips are undone in place.
        arr = own if own is not None else np.asarray(_ItkPixels(image))
        if arr.flags.c_contiguous and arr.flags.writeable:
            flip_in_place(arr, tuple(m for m in range(3) if flip[m]))
            return arr
    src = own if own is not None else sitk.GetArrayViewFromImage(image)
    arr = np.transpose(src, perm)
    for m, flipped in enumerate(flip):
        if flipped:
            arr = np.flip(arr, axis=m)
    # Copy a view into a SimpleITK buffer (it dies with the image); an own array only when the
    # permutation or flips made it non-contiguous.
    return np.ascontiguousarray(arr) if own is not None else np.array(arr, order="C", copy=True)
