"""Pixel data of compressed DICOM files, and enhanced (multi-frame) MR series.

Compressed transfer syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000, RLE ...) are decoded by the
pydicom pixel-data plugins installed with LVP (pylibjpeg with its libjpeg plugin: JPEG baseline,
extended and lossless, JPEG-LS). A file whose transfer syntax no installed plugin decodes is
refused naming that syntax and what would decode it, instead of being called corrupt; a file a
decoder fails on is still reported as corrupt or truncated by the caller.

An enhanced MR image (one file, many frames, geometry in the functional groups) is read into the
same 3-D image as a classic one-file-per-slice series, with the same integrity checks: one
orientation and pixel spacing, frames at distinct positions (several temporal positions, echoes
or stacks are refused: export one), no gaps in the stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import UID

from lvp.errors import InputError
from lvp.io.slice_stack import same_grid, stack_steps
from lvp.io.volume import ArrayImage

# A DICOM stack is an ArrayImage (kept under this name: the readers return it).
StackImage = ArrayImage


def check_decodable(ds: pydicom.Dataset, path: Path) -> None:
    """Refuse a file whose pixel data is compressed in a syntax no installed plugin decodes."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not ts or not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise InputError(f"the DICOM file {path} is compressed as {ts.name} ({ts}), a transfer syntax LVP cannot "
                         "decode; re-export the series uncompressed (Explicit VR Little Endian)") from None
    if not decoder.is_available:
        missing = "; ".join(f"{name}: {', '.join(deps)}" for name, deps in decoder.missing_dependencies.items()
                            if deps) if hasattr(decoder, "missing_dependencies") else ""
        raise InputError(f"the DICOM file {path} is compressed as {ts.name} ({ts}) and no installed decoder reads "
                         f"it{f' (would need {missing})' if missing else ''}; install one of those or re-export the "
                         "series uncompressed (Explicit VR Little Endian)")


# JPEG-family transfer syntaxes: each frame's codestream ends with FF D9 (the JPEG / JPEG-LS
# end-of-image marker, the JPEG 2000 end-of-codestream marker).
_JPEG_FAMILY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
                "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}


def check_codestreams(ds: pydicom.Dataset, path: Path) -> None:
    """Refuse JPEG-family frames cut short (no end-of-image marker).

    Some decoders return an image for a truncated codestream (the missing rows left blank), so a
    transfer that stopped half-way would otherwise pass as a complete slice.
    """
    from pydicom.encaps import generate_frames

    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if ts not in _JPEG_FAMILY or "PixelData" not in ds:
        return
    n = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    except Exception as err:  # a broken encapsulation is a damaged file
        raise InputError(f"the DICOM file {path} is corrupt or truncated: its compressed pixel data cannot be "
                         f"split into frames ({err}); re-export the series") from None
    for k, frame in enumerate(frames, start=1):
        if not frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise InputError(f"the DICOM file {path} is corrupt or truncated: its compressed frame {k} ends without "
                             "its end marker (a transfer cut short?); re-export the series")
    if len(frames) != n:
        raise InputError(f"the DICOM file {path} is corrupt or truncated: it holds {len(frames)} compressed frames "
                         f"where its header declares {n}; re-export the series")


def decode_pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """The stored pixel values of ``ds`` (frames first for a multi-frame image).

    Raises InputError naming the transfer syntax when it cannot be decoded here; a decoder's own
    failure (damaged data) propagates for the caller to report as a corrupt file.
    """
    check_decodable(ds, path)
    check_codestreams(ds, path)
    return ds.pixel_array


def is_multiframe(ds: pydicom.Dataset) -> bool:
    """Whether ``ds`` is a multi-frame image whose geometry lives in functional groups."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    return frames > 1 and "PerFrameFunctionalGroupsSequence" in ds


def _group(ds: pydicom.Dataset, frame: int, sequence: str) -> Any:
    """The ``sequence`` item of ``frame``: per-frame when present, else shared (None if neither)."""
    per_frame = ds.PerFrameFunctionalGroupsSequence[frame]
    if sequence in per_frame and len(per_frame.get(sequence)):
        return per_frame.get(sequence)[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and len(shared[0].get(sequence)):
        return shared[0].get(sequence)[0]
    return None


def orientation(ds: pydicom.Dataset) -> list[float] | None:
    """ImageOrientationPatient of a classic image, or of an enhanced image's first frame."""
    if "ImageOrientationPatient" in ds:
        return [float(v) for v in ds.ImageOrientationPatient]
    if is_multiframe(ds):
        item = _group(ds, 0, "PlaneOrientationSequence")
        if item is not None and "ImageOrientationPatient" in item:
            return [float(v) for v in item.ImageOrientationPatient]
    return None


def frame_count(ds: pydicom.Dataset) -> int:
    """Frames in a file (1 for a classic single-frame image)."""
    return int(ds.get("NumberOfFrames", 1) or 1) if is_multiframe(ds) else 1


def read_enhanced(path: Path, series_uid: str, header: pydicom.Dataset | None = None) -> tuple[StackImage, dict]:
    """Read an enhanced (multi-frame) MR file into a 3-D image (LPS geometry), checking it.

    ``header``: the file's header as the folder scan read it (without pixel data), so it is not
    parsed twice; read here when not given.
    """
    from lvp.io.validate import check_voxel_count

    ds = header
    if ds is None:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # any parser failure means the file is unusable
            raise InputError(f"the DICOM file {path} is corrupt or truncated ({err}); re-export the series") from None
    n = int(ds.NumberOfFrames)
    rows, cols = int(ds.Rows), int(ds.Columns)
    check_voxel_count(rows * cols * n, f"the enhanced image {path} declares {n} frames of {rows} x {cols} =")
    geometry = []
    for f in range(n):
        plane = _group(ds, f, "PlaneOrientationSequence")
        position = _group(ds, f, "PlanePositionSequence")
        measures = _group(ds, f, "PixelMeasuresSequence")
        if plane is None or position is None or measures is None or "PixelSpacing" not in measures:
            raise InputError(f"the enhanced image {path} lacks the geometry of frame {f + 1} (plane orientation, "
                             "position or pixel spacing); it cannot be read as a volume")
        geometry.append((np.asarray([float(v) for v in plane.ImageOrientationPatient]),
                         np.asarray([float(v) for v in position.ImagePositionPatient]),
                         tuple(float(v) for v in measures.PixelSpacing)))
    ref_iop, _, ref_spacing = geometry[0]
    for f, (iop, _, spacing) in enumerate(geometry):
        if not same_grid(iop, ref_iop, spacing, ref_spacing):
            raise InputError(f"the enhanced image {path} mixes frames of different orientation or pixel spacing "
                             f"(frame {f + 1}); export one stack")
    normal = np.cross(ref_iop[:3], ref_iop[3:])
    order, steps, step, repeated, i = stack_steps([g[1] @ normal for g in geometry])
    if repeated is not None:
        raise InputError(f"the enhanced image {path} has several frames at the same position (temporal positions, "
                         "echoes or repeated stacks); export a single 3-D stack")
    if i is not None:
        raise InputError(f"the enhanced image {path} is missing frames: a gap of {steps[i]:.2f} mm where the "
                         f"frame step is {step:.2f} mm")
    from lvp.io.dicom_pixels import rescale_of, stack_type, store_slice
    from lvp.io.validate import check_image_bytes
    from lvp.io.volume import canonical_layout

    # Each frame's rescale (functional groups) on a header of its own, for the type the stack is held in.
    frame_headers = []
    for f in range(n):
        transform = _group(ds, f, "PixelValueTransformationSequence")
        frame = pydicom.Dataset()
        for keyword in ("BitsAllocated", "PixelRepresentation", "SamplesPerPixel"):
            if keyword in ds:
                setattr(frame, keyword, ds.get(keyword))
        for keyword in ("RescaleSlope", "RescaleIntercept"):
            if transform is not None and keyword in transform:
                setattr(frame, keyword, transform.get(keyword))
        frame_headers.append(frame)
    dtype = stack_type(frame_headers)
    # Held while decoding: the stack and the file's pixel data as stored (one frame is decoded at a time).
    stored = int(ds.get("BitsAllocated", 16) or 16) // 8
    check_image_bytes(n * rows * cols, dtype.itemsize + stored,
                      f"the enhanced image {path} declares {n} frames of {rows} x {cols} =", dtype)
    direction = tuple(float(v) for v in np.stack([ref_iop[:3], ref_iop[3:], normal], axis=1).ravel())
    spacing = (ref_spacing[1], ref_spacing[0], step)
    origin = tuple(float(v) for v in geometry[int(order[0])][1])
    layout = canonical_layout(direction, spacing, origin, (cols, rows, n))
    volume = np.empty(layout.shape((n, rows, cols)), dtype)
    stack = layout.source_view(volume)  # indexed (frame along the normal, row, col)
    place = np.empty(n, np.intp)
    place[order] = np.arange(n)  # frame f is slice place[f] of the sorted stack
    try:
        full = pydicom.dcmread(path)
        check_decodable(full, path)
        check_codestreams(full, path)
        from pydicom.pixels import iter_pixels

        count = 0
        for f, pixels in enumerate(iter_pixels(full)):  # one decoded frame alive at a time
            if f >= n or pixels.shape != (rows, cols):
                raise InputError(f"the enhanced image {path} holds pixel data that is not the {n} frames of "
                                 f"{rows} x {cols} its header declares; it is not a grey-scale MR stack")
            store_slice(stack[place[f]], pixels, *rescale_of(frame_headers[f], path))
            count += 1
        if count != n:
            raise InputError(f"the enhanced image {path} holds {count} frames where its header declares {n}; "
                             "it is corrupt or truncated")
    except InputError:
        raise
    except Exception as err:  # any decoder failure means the file is unusable
        raise InputError(f"the DICOM file {path} is corrupt or truncated: its pixel data cannot be read "
                         f"({type(err).__name__}: {err}); re-export the series") from None
    del full
    image = StackImage(volume, spacing=spacing, origin=origin, direction=direction, size=(cols, rows, n),
                       canonical=True)
    from lvp.io.dicom_study import study_identity

    meta = {"series_uid": series_uid, "series_description": str(ds.get("SeriesDescription", "")), "files": 1,
            "frames": n, "warnings": [], "study": study_identity(ds)}
    return image, meta
