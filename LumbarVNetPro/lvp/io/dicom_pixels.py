"""The type a DICOM series' voxels are held in, and each file's pixels stored into that type.

A series is held in its stored integer type when that is exact (issue 13: a 16-bit full field
of view as float32 would take twice the memory): the type pydicom decodes the files to
(BitsAllocated, PixelRepresentation) when no file rescales, or the smallest integer type that
holds every value ``stored * slope + intercept`` can take when the slope and intercept are the
same integers in every file. A fractional rescale, one that differs between files, or pixel data
that is not 8- or 16-bit grey-scale integers is held as float32, computed exactly as before
(float32 arithmetic), so values never change with the type they are held in.

Everything here is decided from the headers, before any pixel data is decoded, so the image's
size as held is checked first (:func:`lvp.io.validate.check_image_bytes`).
"""

from __future__ import annotations

import numpy as np
import pydicom

from lvp.errors import InputError

FLOAT = np.dtype(np.float32)
# Candidate integer types, smallest first (no 64-bit: beyond 32 bits the stack stays float32, as before).
_INTEGER_TYPES = tuple(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "u4", "i4"))


def rescale_of(ds: pydicom.Dataset, path: object = None) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a file; an absent, empty or zero slope is 1, as LVP always read it."""
    try:
        return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError) as err:
        raise InputError(f"the DICOM file {path or 'of the series'} has an unreadable rescale slope or intercept "
                         f"({err}); re-export the series") from None


def decoded_type(ds: pydicom.Dataset) -> np.dtype | None:
    """The integer type pydicom decodes a grey-scale 8- or 16-bit file's pixels to; None for anything else."""
    try:
        bits = int(ds.get("BitsAllocated", 0) or 0)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        return None
    if samples != 1 or bits not in (8, 16):
        return None
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def stack_type(headers: list[pydicom.Dataset]) -> np.dtype:
    """The type the series' stack is held in (see the module docstring), from the files' headers."""
    rescales = {rescale_of(ds) for ds in headers}
    types = {decoded_type(ds) for ds in headers}
    if not headers or None in types or len(rescales) != 1:
        return FLOAT
    slope, intercept = next(iter(rescales))
    if not (float(slope).is_integer() and float(intercept).is_integer()):
        return FLOAT
    if (slope, intercept) == (1.0, 0.0) and len(types) == 1:
        return next(iter(types))  # type: ignore[return-value]
    lo = min(int(np.iinfo(t).min) for t in types)  # type: ignore[arg-type]
    hi = max(int(np.iinfo(t).max) for t in types)  # type: ignore[arg-type]
    ends = (int(slope) * lo + int(intercept), int(slope) * hi + int(intercept))
    for candidate in _INTEGER_TYPES:
        info = np.iinfo(candidate)
        if info.min <= min(ends) and max(ends) <= info.max:
            return candidate
    return FLOAT


def store_slice(out: np.ndarray, pixels: np.ndarray, slope: float, intercept: float) -> None:
    """``out[...] = pixels * slope + intercept`` in ``out``'s type (a slice of the stack, or a view of one).

    float32: float32 arithmetic in place, as LVP always computed it. Integer (chosen by
    :func:`stack_type`, so every value fits): exact, through one int64 slice when it rescales.
    """
    if out.dtype.kind == "f":
        out[...] = pixels
        out *= slope
        out += intercept
        return
    if pixels.dtype.kind not in "iub":
        raise InputError("a DICOM file's pixel data decodes to non-integer values where its header declares "
                         "integers; re-export the series")
    if (slope, intercept) == (1.0, 0.0) and np.can_cast(pixels.dtype, out.dtype, "safe"):
        out[...] = pixels
        return
    values = pixels.astype(np.int64)
    if (slope, intercept) != (1.0, 0.0):
        values *= int(slope)
        values += int(intercept)
    info = np.iinfo(out.dtype)
    if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
        raise InputError(f"a DICOM file's pixel values do not fit the {out.dtype} its header declares "
                         "(BitsAllocated, PixelRepresentation); re-export the series")
    out[...] = values
