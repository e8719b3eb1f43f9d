"""The two label files of a result, streamed from the canonical label map slab by slab.

``segmentation.nii.gz`` (NIfTI-1) and ``segmentation.seg.nrrd`` (:mod:`lvp.io.seg_nrrd`) hold the
same uint8 voxels on the input's own grid, stored with the first index (ITK x) fastest in both
formats. :func:`write_label_files` maps a few source slices at a time back from the canonical
grid (the permutation and flips of :class:`lvp.io.volume.SourceGeometry`), casts them to uint8
and feeds the same bytes to one gzip stream per file. So the write holds a slab, never a
full-size source-grid copy nor a SimpleITK image of it: its memory does not grow with the input.

The headers are written here: the NIfTI-1 header as ITK's NIfTI writer makes it (qform and sform
"scanner", the quaternion of the direction, LPS to RAS; tests compare it with ITK's, field by
field), the NRRD header as ITK's NRRD writer makes it (:func:`lvp.io.seg_nrrd.seg_nrrd_header`).
Level-1 gzip, as before: label maps compress to about the size of level 6, several times faster.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lvp.io.volume import SourceGeometry


def itk_geometry(geometry: SourceGeometry) -> SourceGeometry:
    """``geometry`` with its direction as a SimpleITK image stores it.

    ITK's image keeps a direction entry's -0.0 or turns it into 0.0 (depending on the entry);
    its writers write what it kept. Going through an image of one voxel gives the headers the
    same signed zeros as the files ITK writes, so they stay byte-identical to the earlier ones.
    """
    import SimpleITK as sitk

    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetDirection(geometry.direction)
    return dataclasses.replace(geometry, direction=tuple(probe.GetDirection()))

# NIfTI-1 header (348 bytes, little endian) and the 4-byte extension flag that ends it in a .nii.
_NIFTI1 = struct.Struct("<i10s18sihcc8h3fhhhh8f3fhccffffii80s24shh6f12f16s4s")
NIFTI_VOX_OFFSET = 352
_SLAB_BYTES = 8 << 20  # a slab of source slices is at most ~8 MB (at least one slice)


def quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """NIfTI's ``(b, c, d, qfac)`` of a 3x3 matrix with unit (or any non-zero) columns.

    The columns are normalised and made orthogonal (the nearest rotation, by SVD), an improper
    matrix gets ``qfac = -1`` with its third column negated, then the quaternion is taken from the
    largest of the four candidate terms (NIfTI-1 standard, ``nifti_mat44_to_quatern``).
    """
    r = np.array(rotation, dtype=float)
    norms = np.linalg.norm(r, axis=0)
    for j in range(3):
        if norms[j] == 0.0:  # a degenerate column becomes the unit axis
            r[:, j] = np.eye(3)[j]
            norms[j] = 1.0
    r = r / norms
    u, _, vt = np.linalg.svd(r)
    if not np.allclose(u @ vt, r, atol=1e-12, rtol=0):
        r = u @ vt
    qfac = 1.0
    if np.linalg.det(r) <= 0:
        qfac = -1.0
        r[:, 2] = -r[:, 2]
    (r11, r12, r13), (r21, r22, r23), (r31, r32, r33) = r
    a = r11 + r22 + r33 + 1.0
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b, c, d = 0.25 * (r32 - r23) / a, 0.25 * (r13 - r31) / a, 0.25 * (r21 - r12) / a
    else:
        xd, yd, zd = 1.0 + r11 - (r22 + r33), 1.0 + r22 - (r11 + r33), 1.0 + r33 - (r11 + r22)
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd)
            c, d, a = 0.25 * (r12 + r21) / b, 0.25 * (r13 + r31) / b, 0.25 * (r32 - r23) / b
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd)
            b, d, a = 0.25 * (r12 + r21) / c, 0.25 * (r23 + r32) / c, 0.25 * (r13 - r31) / c
        else:
            d = 0.5 * np.sqrt(zd)
            b, c, a = 0.25 * (r13 + r31) / d, 0.25 * (r23 + r32) / d, 0.25 * (r21 - r12) / d
        if a < 0.0:
            b, c, d = -b, -c, -d
    return float(b), float(c), float(d), qfac


def nifti1_header(geometry: SourceGeometry) -> bytes:
    """The 352 bytes that open a uint8 ``.nii`` on ``geometry``'s grid (header + extension flag).

    Fields as ITK's NIfTI writer sets them: ``dim`` (3, x, y, z, 1, 1, 1, 1), datatype uint8,
    ``pixdim`` (qfac, spacing), ``vox_offset`` 352, ``scl_slope`` 1, ``xyzt_units`` mm and s,
    qform and sform codes 1 (scanner), the quaternion and offset of the RAS direction and origin,
    and the sform rows ``RAS direction x spacing | origin`` (computed in double, stored in float32).
    """
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    origin = geometry.origin
    # LPS -> RAS: the first two rows negated (a zero becomes -0.0, as ITK writes it).
    ras = np.array([-direction[0], -direction[1], direction[2]])
    b, c, d, qfac = quaternion(ras)
    spacing = np.asarray(geometry.spacing, dtype=float)
    srow = ras * spacing[None, :]  # in double, stored as float32 (as ITK's writer)
    offset = np.array([-origin[0], -origin[1], origin[2]], dtype=float)
    nx, ny, nz = geometry.size
    fields = (
        348, b"", b"", 0, 0, b"r", b"\0",
        3, nx, ny, nz, 1, 1, 1, 1,
        0.0, 0.0, 0.0, 0,
        2, 8, 0,  # datatype DT_UINT8, bitpix, slice_start
        qfac, *(float(s) for s in spacing), 0.0, 0.0, 0.0, 0.0,
        float(NIFTI_VOX_OFFSET), 1.0, 0.0,  # vox_offset, scl_slope, scl_inter
        0, b"\0", bytes([2 | 8]),  # slice_end, slice_code, xyzt_units (NIFTI_UNITS_MM | NIFTI_UNITS_SEC)
        0.0, 0.0, 0.0, 0.0, 0, 0,  # cal_max, cal_min, slice_duration, toffset, glmax, glmin
        b"", b"", 1, 1,  # descrip, aux_file, qform_code, sform_code (NIFTI_XFORM_SCANNER_ANAT)
        b, c, d, *(float(v) for v in offset),
        *(float(v) for row in np.column_stack([srow, offset]) for v in row),
        b"", b"n+1\0",
    )
    return _NIFTI1.pack(*fields) + b"\0\0\0\0"


def source_slabs(labels: np.ndarray, geometry: SourceGeometry, slab_bytes: int = _SLAB_BYTES) -> Iterator[np.ndarray]:
    """The canonical ``labels`` on the source grid as uint8, a few source slices (ITK z) at a time.

    Each yielded array is ``(k, ny, nx)`` in SimpleITK order; together they are
    ``Volume.to_source_array(labels, dtype=np.uint8)``, values cast as ``astype`` casts them. The
    same buffer is reused: consume each slab before asking for the next.
    """
    view = geometry.source_view(labels)
    nz, ny, nx = view.shape
    if (nx, ny, nz) != tuple(geometry.size):
        raise ValueError(f"labels of shape {labels.shape} do not fit the source grid {geometry.size}")
    depth = max(1, min(nz, slab_bytes // max(1, ny * nx)))
    buffer = np.empty((depth, ny, nx), np.uint8)
    for z0 in range(0, nz, depth):
        z1 = min(nz, z0 + depth)
        out = buffer[: z1 - z0]
        np.copyto(out, view[z0:z1], casting="unsafe")
        yield out


def write_label_files(labels: np.ndarray, geometry: SourceGeometry, nifti_path: str | Path | None,
                      seg_nrrd_path: str | Path | None, *, compression_level: int = 1,
                      slab_bytes: int = _SLAB_BYTES) -> list[dict]:
    """Write the canonical label map ``labels`` as NIfTI-1 and/or Slicer ``.seg.nrrd``; return the segments.

    ``labels``: integer LVP output values (0..255) on the canonical grid of ``geometry``; both
    files get the uint8 source-grid voxels (what ``Volume.to_source_image(labels, np.uint8)``
    held). A path of None skips that file (and returns no segments). Values outside 0..255, or
    (with a seg.nrrd, which names them) not LVP labels, raise ValueError before anything is
    written. ``slab_bytes``: the most a slab of source slices may hold (at least one slice).

    The voxels are compressed once: both files are one gzip member each, and the voxels' deflate
    blocks are the same bytes in both (the NIfTI header is deflated on its own and flushed to a
    byte boundary before them, which the format allows). Run-length deflate (``Z_RLE``) suits a
    label map: smaller than level-1 deflate and faster.
    """
    from lvp.io.seg_nrrd import check_label_range, seg_nrrd_header, segments_of_canonical

    geometry = itk_geometry(geometry)
    if seg_nrrd_path is not None:
        segments = segments_of_canonical(labels, geometry)
    else:  # a NIfTI alone takes any values of 0..255 (the network's classes, for one)
        check_label_range(labels)
        segments = []
    files: list[_GzipMember] = []
    try:
        if nifti_path is not None:
            header = nifti1_header(geometry)
            head = zlib.compressobj(compression_level, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
            files.append(_GzipMember(nifti_path, b"", header, head.compress(header) + head.flush(zlib.Z_SYNC_FLUSH)))
        if seg_nrrd_path is not None:
            files.append(_GzipMember(seg_nrrd_path, seg_nrrd_header(geometry, segments), b"", b""))
        deflate = zlib.compressobj(compression_level, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
        for slab in source_slabs(labels, geometry, slab_bytes):
            data = memoryview(slab).cast("B")
            block = deflate.compress(data)
            for f in files:
                f.add(data, block)
        block = deflate.flush()
        for f in files:
            f.finish(block)
    finally:
        for f in files:
            f.fh.close()
    return segments


# gzip member header (RFC 1952): magic, deflate, no flags, no mtime, no extra flags, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class _GzipMember:
    """A file: ``raw_prefix`` as it is, then one gzip member whose deflate blocks are given."""

    def __init__(self, path: str | Path, raw_prefix: bytes, plain_head: bytes, deflated_head: bytes):
        self.fh = open(path, "wb")  # closed by write_label_files
        self.fh.write(raw_prefix + _GZIP_HEADER + deflated_head)
        self.crc = zlib.crc32(plain_head)
        self.size = len(plain_head)

    def add(self, plain: memoryview, deflated: bytes) -> None:
        self.crc = zlib.crc32(plain, self.crc)
        self.size += len(plain)
        if deflated:
            self.fh.write(deflated)

    def finish(self, deflated: bytes) -> None:
        self.fh.write(deflated + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
