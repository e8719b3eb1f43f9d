"""Checks that an image can be a lumbar spine MRI series before any work is spent on it.

Each check raises :class:`lvp.errors.InputError` with a message that names the problem and
says what to do. Limits are module constants so they are documented in one place.
"""

from __future__ import annotations

import os

import numpy as np

from lvp.errors import InputError
from lvp.io.volume import AXIS_NAMES, Volume

MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 15.0
# A lumbar field of view: the lumbar spine with the sacrum spans about 180-220 mm cranio-caudally;
# SPIDER's central slabs are only 13 slices (13 mm) wide, which must still pass.
MIN_EXTENT_MM = {"left-right": 8.0, "superior-inferior": 80.0, "anterior-posterior": 50.0}
MAX_EXTENT_MM = 900.0
MAX_VOXELS = 300_000_000
# Memory (issue 13: a case runs in at most 1 GB): the image is held once, in its stored type
# (float64 as float32), and the rest of a case costs what its working grid costs. 600 MB is a
# 16-bit image of MAX_VOXELS (a whole 1024 x 1024 x 280 field of view as DICOM stores it); a
# float32 image gets half as many voxels. The limit is checked on the header, before decoding.
MAX_IMAGE_BYTES = 600_000_000
# The working memory of a case beyond the image, calibrated on the full-field-of-view runs of
# docs/performance.md "Memory" (2 threads, model lvp-vnet 1.1.0; the estimate is 13-14 MiB above
# the measured peaks of the 8- and 16-bit 1024 x 1024 x 280 volumes, 676 and 955 MiB): the
# interpreter, libraries and model; per voxel of the network grid (ONNX Runtime's activations,
# its input and the logits); per source voxel of the image's content box (the class map, the
# restored probabilities and the labelling's crop there). A case whose estimate exceeds the
# budget (1 GB = 1024 MiB) is refused before the network runs (check_working_memory).
MEMORY_BUDGET_BYTES = 1024 * 2**20
RUNTIME_BYTES = 176 * 2**20
NETWORK_BYTES_PER_GRID_VOXEL = 56
BYTES_PER_CONTENT_VOXEL = 6
# A DICOM input holds pydicom and its source headers through the case (volume.meta; the SEG and
# SR reference them): measured on 16-bit DICOM series of 1024 x 1024 x 200 and x 280 padded slices
# with SPIDER content, 55-66 MiB above the estimate without it (peaks 821 and 983-993 MiB, in the
# labelling). Its DICOM SEG and SR are written after the image's voxels are released (lvp.pipeline):
# highdicom's tables and the encoded frames then cost 125 MiB beyond that (the stage's own peak,
# 519 MiB for x 280, is far below the case's), so they count only where the image is smaller.
DICOM_INPUT_BYTES = 80 * 2**20
DICOM_OUTPUT_BYTES = 128 * 2**20
# Undefined (NaN/inf) voxels: a few are a saving glitch, reported and read as 0; more is a broken file.
MAX_NONFINITE_FRACTION = 0.01
MIN_SLICES = 3
# The through-plane axis must point within this angle of left-right to count as sagittal.
MAX_SAGITTAL_OBLIQUITY_DEG = 45.0
PLANE_OF_NORMAL = {0: "sagittal", 1: "coronal", 2: "axial"}  # LPS component of the slice normal


# A machine with more memory may allow a case more (``lvp infer --memory-limit MIB``, or this
# environment variable): the budget and the image limit then scale together.
MEMORY_LIMIT_ENV = "LVP_MEMORY_LIMIT_MIB"
MIN_MEMORY_LIMIT_MIB = 256


def memory_budget_bytes() -> int:
    """The memory one case may use: :data:`MEMORY_BUDGET_BYTES`, or ``$LVP_MEMORY_LIMIT_MIB`` MiB."""
    raw = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return MEMORY_BUDGET_BYTES
    try:
        mib = int(raw)
    except ValueError:
        raise InputError(f"{MEMORY_LIMIT_ENV}={raw!r} is not a whole number of MiB") from None
    if mib < MIN_MEMORY_LIMIT_MIB:
        raise InputError(f"{MEMORY_LIMIT_ENV}={mib}: a case needs at least {MIN_MEMORY_LIMIT_MIB} MiB")
    return mib * 2**20


def image_bytes_limit() -> int:
    """The largest image LVP holds: :data:`MAX_IMAGE_BYTES`, scaled with a raised memory budget."""
    return MAX_IMAGE_BYTES * memory_budget_bytes() // MEMORY_BUDGET_BYTES


def _raise_hint() -> str:
    budget = memory_budget_bytes()
    return (f"; on a machine with more memory, allow more than {budget / 2**20:,.0f} MiB per case with "
            f"--memory-limit MIB (environment {MEMORY_LIMIT_ENV})")


def check_spacing(spacing: tuple[float, ...]) -> None:
    """Refuse zero, negative, non-finite or absurd voxel spacing."""
    for s in spacing:
        if not np.isfinite(s) or s <= 0:
            raise InputError(f"voxel spacing {tuple(spacing)} mm contains a zero, negative or undefined value; "
                             "the file's geometry header is broken")
        if s < MIN_SPACING_MM or s > MAX_SPACING_MM:
            raise InputError(
                f"voxel spacing {tuple(round(x, 4) for x in spacing)} mm is outside the plausible MRI range "
                f"{MIN_SPACING_MM}-{MAX_SPACING_MM} mm; check the file's geometry (units must be mm)"
            )


def check_voxel_count(voxels: int, what: str = "the image has") -> None:
    """Refuse more voxels than a lumbar series can have (also used on headers, before reading)."""
    if voxels > MAX_VOXELS:
        raise InputError(f"{what} {voxels:,} voxels, more than the {MAX_VOXELS:,} a lumbar series can have; "
                         "crop or downsample it")


def check_image_bytes(voxels: int, bytes_per_voxel: int, what: str = "the image has",
                      stored: np.dtype | None = None) -> None:
    """Refuse an image whose voxels, as LVP holds them, exceed :func:`image_bytes_limit`.

    ``bytes_per_voxel``: as held (``stored``, the file's own type, is named in the message).
    """
    size = int(voxels) * int(bytes_per_voxel)
    limit = image_bytes_limit()
    if size <= limit:
        return
    kind = np.dtype(stored) if stored is not None else None
    named = (f"{kind.itemsize * 8}-bit {'float' if kind.kind == 'f' else 'integer'}" if kind is not None
             else f"{bytes_per_voxel}-byte")
    raise InputError(
        f"{what} {voxels:,} voxels of {named} data: {size / 1e9:.2f} GB once decoded, more than the "
        f"{limit / 1e9:.1f} GB LVP holds an image in (a case must run in {memory_budget_bytes() / 2**30:.1f} GiB "
        "of memory). Crop the series to the lumbar spine, resample it to a coarser grid, or store it as 16-bit "
        f"integers (MR magnitudes need no more){_raise_hint()}"
    )


def working_memory(image_bytes: int, content_voxels: int, grid_voxels: int, dicom_output: bool = False,
                   dicom_input: bool | None = None) -> int:
    """Estimated peak bytes of one case (see :data:`MEMORY_BUDGET_BYTES` and the constants above it).

    The larger of two moments: the network and labelling, with the image held; the DICOM SEG and SR
    (``dicom_output``), after the image is released. ``dicom_input`` (default: ``dicom_output``):
    the input is a DICOM series.
    """
    dicom_input = dicom_output if dicom_input is None else dicom_input
    held = RUNTIME_BYTES + BYTES_PER_CONTENT_VOXEL * int(content_voxels) + (DICOM_INPUT_BYTES if dicom_input else 0)
    network = int(image_bytes) + NETWORK_BYTES_PER_GRID_VOXEL * int(grid_voxels)
    return held + max(network, DICOM_OUTPUT_BYTES if dicom_output else 0)


def check_working_memory(image_bytes: int, content_voxels: int, grid_voxels: int, extent_mm: tuple[float, ...],
                         dicom_output: bool = False, dicom_input: bool | None = None) -> int:
    """Refuse an input whose case would not fit in :func:`memory_budget_bytes`; return the estimate.

    ``content_voxels``: the voxels of the image's box without its empty (padding) edge slices;
    ``grid_voxels``: the network grid those are resampled to; ``extent_mm``: that box in mm;
    ``dicom_output``: the case writes a DICOM SEG and SR (:data:`DICOM_OUTPUT_BYTES`);
    ``dicom_input``: the input is a DICOM series (:data:`DICOM_INPUT_BYTES`; default: ``dicom_output``).
    """
    need = working_memory(image_bytes, content_voxels, grid_voxels, dicom_output, dicom_input)
    budget = memory_budget_bytes()
    if need > budget:
        shown = " x ".join(f"{e:.0f}" for e in extent_mm)
        raise InputError(
            f"the image's content spans {shown} mm (left-right x cranio-caudal x antero-posterior, "
            f"{content_voxels:,} voxels; a {grid_voxels:,}-voxel network grid) in an image of "
            f"{int(image_bytes) / 2**20:,.0f} MiB{' with DICOM SEG and SR outputs' if dicom_output else ''}: "
            f"reading it would take about {need / 2**20:,.0f} MiB of memory, more than the "
            f"{budget / 2**20:,.0f} MiB a case may use. Crop the series to the lumbar spine (a lumbar "
            f"field of view is about 80 x 300 x 250 mm) or resample it to a coarser grid{_raise_hint()}"
        )
    return need


def nonfinite_warning(count: int, total: int, what: str = "the image") -> dict:
    """Refuse an image with too many NaN/infinite voxels; else the report warning that names them."""
    fraction = count / max(total, 1)
    if fraction > MAX_NONFINITE_FRACTION:
        raise InputError(f"{what} has {count:,} NaN or infinite voxels ({100 * fraction:.1f}% of the image, more "
                         f"than {100 * MAX_NONFINITE_FRACTION:g}%); it was not saved correctly")
    return {"code": "nonfinite_voxels",
            "message": f"{count:,} voxel(s) of the image ({100 * fraction:.3f}%) are NaN or infinite (undefined "
                       "values in the file); they were read as 0. Check the image where it matters."}


def acquisition_axis(volume: Volume) -> int:
    """Canonical axis most likely to be the through-plane (slice) direction of the acquisition.

    A DICOM reader records the slice normal; for other formats the axis with clearly the
    largest spacing is the slice axis (2-D acquisitions), else the axis with the fewest voxels
    (3-D slabs such as SPIDER's central sagittal slab).
    """
    if "slice_axis" in volume.meta:
        return int(volume.meta["slice_axis"])
    spacing = np.asarray(volume.spacing)
    order = np.argsort(spacing)
    if spacing[order[2]] > 1.3 * spacing[order[1]]:
        return int(order[2])
    return int(np.argmin(volume.array.shape))


def check_sagittal(volume: Volume) -> None:
    """Refuse an axial or coronal acquisition (LVP reads sagittal series)."""
    axis = acquisition_axis(volume)
    direction = volume.affine[:3, axis] / np.linalg.norm(volume.affine[:3, axis])
    lr_cos = abs(direction[0])
    if axis != 0 or lr_cos < np.cos(np.radians(MAX_SAGITTAL_OBLIQUITY_DEG)):
        plane = PLANE_OF_NORMAL[int(np.argmax(np.abs(direction)))]
        article = "an" if plane == "axial" else "a"
        raise InputError(
            f"this is {article} {plane} acquisition (slices stacked along the {AXIS_NAMES[axis]} axis); "
            "LVP needs a sagittal T2 series of the lumbar spine: choose the sagittal series"
        )


def check_slices(volume: Volume) -> None:
    """Refuse single slices and series with too few slices to be 3-D."""
    shape = volume.array.shape
    if min(shape) < MIN_SLICES:
        raise InputError(
            f"the image has only {min(shape)} slice(s) along the {AXIS_NAMES[int(np.argmin(shape))]} axis; "
            f"LVP needs a 3-D series with at least {MIN_SLICES} slices (was a single slice exported?)"
        )


def check_extent(volume: Volume, *, lumbar_fov: bool = True) -> None:
    """Refuse fields of view too large for a body or (``lumbar_fov``) too small for a lumbar spine."""
    shape = volume.array.shape
    check_voxel_count(int(np.prod(shape, dtype=np.int64)))
    for name, extent in zip(AXIS_NAMES, volume.extent_mm):
        if lumbar_fov and extent < MIN_EXTENT_MM[name]:
            raise InputError(
                f"the field of view is {extent:.0f} mm along the {name} axis, too small for a lumbar spine "
                f"(at least {MIN_EXTENT_MM[name]:.0f} mm); is this a truncated or cropped series?"
            )
        if extent > MAX_EXTENT_MM:
            raise InputError(f"the field of view is {extent:.0f} mm along the {name} axis, larger than a body "
                             f"({MAX_EXTENT_MM:.0f} mm); check the spacing units (mm expected)")


def check_intensities(volume: Volume) -> None:
    """Refuse images with NaN/Inf, constant images and CT-like (Hounsfield) intensities."""
    arr = volume.array
    # Slice by slice: a whole-volume comparison would be a full-size boolean temporary.
    if arr.dtype.kind == "f" and not all(np.isfinite(s).all() for s in arr):
        raise InputError("the image contains NaN or infinite values; it was not saved correctly")
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        raise InputError(f"the image is constant (every voxel is {lo}); there is nothing to read")
    # MR magnitude images are non-negative; CT in Hounsfield units has air near -1000.
    if lo < -500 and sum(int(np.count_nonzero(s < -500)) for s in arr) > 0.05 * arr.size:
        raise InputError("the intensities look like CT Hounsfield units (many voxels below -500); "
                         "LVP reads T2-weighted MRI")


def validate_volume(volume: Volume, *, require_sagittal: bool = True) -> None:
    """Run every check on a canonical volume; raise InputError on the first problem."""
    check_spacing(volume.spacing)
    check_slices(volume)
    # Orientation before extent, so an axial series is named as such rather than "too small".
    if require_sagittal:
        check_sagittal(volume)
    # An axial slab covers a few discs only: the lumbar field-of-view minimum applies to sagittal series.
    check_extent(volume, lumbar_fov=require_sagittal)
    check_intensities(volume)
