"""Image file headers read by LVP itself, before ITK reads (and trusts) them.

ITK quietly repairs what it should refuse: a NIfTI ``pixdim`` of 0 or NaN becomes 1 mm (so every
measurement is silently wrong), NaN voxels of a NIfTI file become 0, and a small compressed file
can declare gigabytes of voxels that are decompressed before any limit applies. This module
parses the headers with :mod:`struct` (NIfTI-1, NIfTI-2) or as text (NRRD, MetaImage) and
refuses such files before their body is decompressed:

* :func:`inspect_nifti` checks the header (size against the validator's limits, spacing,
  orientation), then streams the body once to refuse truncated files and to count the
  non-finite voxels that ITK would zero;
* :func:`check_text_header` checks the declared size of a ``.nrrd/.nhdr/.mha/.mhd`` file.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvp.errors import InputError
from lvp.io.validate import check_image_bytes, check_voxel_count
from lvp.io.volume import CanonicalLayout

CHUNK = 1 << 20
# NIfTI datatype codes whose voxels can be NaN/inf (float32, float64); longer floats are refused.
FLOAT_TYPES = {16: "f4", 64: "f8"}
UNSUPPORTED_TYPES = {1536: "float128", 32: "complex64", 1792: "complex128", 2048: "complex256",
                     128: "RGB", 2304: "RGBA"}


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that decide geometry and size."""

    version: int  # 1 or 2
    order: str  # "<" or ">"
    dims: tuple[int, ...]  # sizes of the ndim axes
    datatype: int
    bitpix: int
    pixdim: tuple[float, ...]  # spacing of the ndim axes (pixdim[1:ndim+1])
    vox_offset: int
    qform_code: int
    sform_code: int
    quatern: tuple[float, ...]  # b, c, d, qoffset x, y, z
    srow: tuple[float, ...]  # 12 values, rows x, y, z
    scl: tuple[float, float] = (0.0, 0.0)  # scl_slope, scl_inter (slope 0: no scaling)

    @property
    def voxels(self) -> int:
        """Number of voxels the header declares (all axes)."""
        return int(np.prod(np.asarray(self.dims, dtype=np.int64)))

    @property
    def data_bytes(self) -> int:
        """Bytes of image data the header declares."""
        return self.voxels * self.bitpix // 8


def _nifti_version(head: bytes) -> tuple[int, str] | None:
    for order in ("<", ">"):
        size = struct.unpack(f"{order}i", head[:4])[0]
        if size == 348:
            return 1, order
        if size == 540:
            return 2, order
    return None


def parse_nifti_header(head: bytes, path: Path) -> NiftiHeader:
    """Parse the first 348 (NIfTI-1) or 540 (NIfTI-2) bytes; refuse what is not a NIfTI header."""
    if len(head) < 348:
        raise InputError(f"{path} is truncated: shorter than a NIfTI header")
    found = _nifti_version(head)
    if found is None:
        raise InputError(f"{path} is not a NIfTI file (its header size field is neither 348 nor 540); "
                         "is the file name's suffix wrong?")
    version, o = found
    if version == 1:
        dim = struct.unpack_from(f"{o}8h", head, 40)
        datatype, bitpix = struct.unpack_from(f"{o}2h", head, 70)
        pixdim = struct.unpack_from(f"{o}8f", head, 76)
        vox_offset = struct.unpack_from(f"{o}f", head, 108)[0]
        qform_code, sform_code = struct.unpack_from(f"{o}2h", head, 252)
        quatern = struct.unpack_from(f"{o}6f", head, 256)
        srow = struct.unpack_from(f"{o}12f", head, 280)
        scl = struct.unpack_from(f"{o}2f", head, 112)
    else:
        if len(head) < 540:
            raise InputError(f"{path} is truncated: shorter than a NIfTI-2 header")
        datatype, bitpix = struct.unpack_from(f"{o}2h", head, 12)
        dim = struct.unpack_from(f"{o}8q", head, 16)
        pixdim = struct.unpack_from(f"{o}8d", head, 104)
        vox_offset = struct.unpack_from(f"{o}q", head, 168)[0]
        qform_code, sform_code = struct.unpack_from(f"{o}2i", head, 344)
        quatern = struct.unpack_from(f"{o}6d", head, 352)
        srow = struct.unpack_from(f"{o}12d", head, 400)
        scl = struct.unpack_from(f"{o}2d", head, 176)
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        raise InputError(f"{path}: the NIfTI header declares {ndim} dimensions (1 to 7 allowed); the header is "
                         "corrupt")
    dims = tuple(int(d) for d in dim[1: ndim + 1])
    if any(d < 1 for d in dims):
        raise InputError(f"{path}: the NIfTI header declares image size {dims}; every size must be at least 1")
    if not math.isfinite(vox_offset) or vox_offset < 0:
        raise InputError(f"{path}: the NIfTI header's data offset ({vox_offset}) is invalid; the header is corrupt")
    return NiftiHeader(version, o, dims, int(datatype), int(bitpix), tuple(float(p) for p in pixdim[1: ndim + 1]),
                       int(vox_offset), int(qform_code), int(sform_code), tuple(float(q) for q in quatern),
                       tuple(float(s) for s in srow), (float(scl[0]), float(scl[1])))


def check_nifti_header(h: NiftiHeader, path: Path) -> None:
    """Refuse sizes beyond the validator's limits, and spacing or orientation ITK would replace."""
    check_voxel_count(h.voxels, f"{path}: the header declares {' x '.join(map(str, h.dims))} =")
    if h.datatype in UNSUPPORTED_TYPES:
        raise InputError(f"{path} holds {UNSUPPORTED_TYPES[h.datatype]} voxels; LVP reads grey-scale MR images "
                         "(integer or 32/64-bit float voxels)")
    if h.bitpix <= 0 or h.bitpix % 8:
        raise InputError(f"{path}: the NIfTI header's bits per voxel ({h.bitpix}) is invalid; the header is corrupt")
    plain = PLAIN_TYPES.get(h.datatype)
    if plain is not None and np.dtype(plain).itemsize * 8 == h.bitpix:
        # As held: float64 as float32 (held_dtype); ITK's intensity scaling (scl_slope) gives float32.
        scaled = h.scl[0] not in (0.0, 1.0) or h.scl[1] != 0.0
        held = max(held_dtype(np.dtype(plain)).itemsize, 4 if scaled else 0)
        check_image_bytes(h.voxels, held, f"{path}: the header declares {' x '.join(map(str, h.dims))} =",
                          np.dtype(plain))
    spatial = h.pixdim[:3]
    if any(not math.isfinite(p) or p <= 0 for p in spatial):
        shown = tuple(round(p, 4) if math.isfinite(p) else p for p in spatial)
        raise InputError(
            f"{path}: the NIfTI header gives the voxel spacing (pixdim) as {shown} mm: zero, negative or "
            "undefined. Image readers silently replace it with 1 mm, which would make every measurement wrong; "
            "fix the file's header (re-export it from the scanner data)"
        )
    if h.sform_code > 0:
        rows = np.asarray(h.srow, dtype=float).reshape(3, 4)
        norms = np.linalg.norm(rows[:, :3], axis=0) if np.isfinite(rows).all() else None
        if norms is None or np.any(norms[: len(h.dims)] <= 0):
            raise InputError(f"{path}: the NIfTI header's sform (voxel-to-patient matrix) is undefined or "
                             "degenerate (NaN or zero columns); fix the file's header")
    if h.qform_code > 0 and not all(math.isfinite(q) for q in h.quatern):
        raise InputError(f"{path}: the NIfTI header's qform (orientation quaternion or offset) holds NaN or "
                         "infinite values; fix the file's header")


def _raw_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _gzip_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed chunks of a gzip file (bounded memory); refuse broken or truncated streams."""
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK // 4):
                # max_length bounds the output of a highly compressible chunk (a "zip bomb").
                out = decomp.decompress(chunk, CHUNK)
                while True:
                    if out:
                        yield out
                    if not decomp.unconsumed_tail:
                        break
                    out = decomp.decompress(decomp.unconsumed_tail, CHUNK)
                if decomp.eof:
                    return
    except zlib.error as err:
        raise InputError(f"{path} is corrupt (gzip stream error: {err}); copy the file again") from None
    if not decomp.eof:
        raise InputError(f"{path} is truncated: the compressed data ends before the image does; copy the file again")


@dataclass(frozen=True)
class NiftiScan:
    """What :func:`inspect_nifti` found: the header and the count of NaN/infinite voxels."""

    header: NiftiHeader
    nonfinite: int
    # With ``keep_data``: the voxels (native byte order; float64 files as float32) when the file
    # is plain integer/float data without intensity scaling; None otherwise. In ITK's (z, y, x)
    # order, or in canonical order when ``layout`` is given.
    data: np.ndarray | None = None
    layout: CanonicalLayout | None = None


def held_dtype(file_dtype: np.dtype) -> np.dtype:
    """The type LVP holds a file's voxels in: native byte order, float64 as float32.

    Every computation on the image (resampling, intensity scaling, measurement) is float32, so a
    float64 image is rounded to float32 on the way in rather than held at twice the size.
    """
    dtype = np.dtype(file_dtype).newbyteorder("=")
    return np.dtype(np.float32) if dtype.kind == "f" and dtype.itemsize > 4 else dtype


class _SlabSink:
    """Takes a NIfTI body's bytes in file order and stores them, a few slices at a time, in ``target``.

    ``target`` is indexed in the file's (z, y, x) order (a view of the canonical array: each
    slab lands straight in its canonical place, in the held type); one slab of a few MB is the
    only scratch. Non-finite float voxels are counted on the way.
    """

    def __init__(self, target: np.ndarray, file_dtype: np.dtype, path: Path) -> None:
        self.target = target
        self.path = path
        plane = int(np.prod(target.shape[1:], dtype=np.int64)) * file_dtype.itemsize
        self.buf = np.empty((max(1, (4 << 20) // max(plane, 1)), *target.shape[1:]), file_dtype)
        self.bytes = self.buf.reshape(-1).view(np.uint8)
        self.plane = plane
        self.fill = 0
        self.z = 0
        self.nonfinite = 0

    def write(self, chunk: bytes, lo: int, hi: int) -> None:
        """Store ``chunk[lo:hi]``, the next bytes of the image."""
        while lo < hi:
            take = min(hi - lo, self.bytes.size - self.fill)
            self.bytes[self.fill:self.fill + take] = np.frombuffer(chunk, np.uint8, take, lo)
            self.fill += take
            lo += take
            if self.fill == self.bytes.size:
                self.flush()

    def flush(self) -> None:
        """Move the whole slices in the buffer to their place."""
        n = self.fill // self.plane if self.plane else 0
        if n == 0:
            return
        slab = self.buf[:n]
        dest = self.target[self.z:self.z + n]
        if slab.dtype.kind == "f":
            before = int(np.count_nonzero(~np.isfinite(slab)))
            self.nonfinite += before
            with np.errstate(over="ignore"):  # checked just below
                dest[...] = slab
            if dest.dtype.itemsize < slab.dtype.itemsize and int(np.count_nonzero(~np.isfinite(dest))) > before:
                raise InputError(f"{self.path} holds float64 values beyond the float32 range (over 3.4e38); MR "
                                 "intensities are never that large: the file is corrupt or not an MR image")
        else:
            dest[...] = slab
        self.z += n
        self.fill = 0


# NIfTI datatype code -> numpy type of the voxels LVP reads itself (no scaling, one component).
PLAIN_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
               1280: "u8"}


def inspect_nifti(path: Path, keep_data: bool = False,
                  layout: Callable[[NiftiHeader], CanonicalLayout | None] | None = None) -> NiftiScan:
    """Check a ``.nii`` / ``.nii.gz`` file before ITK reads it.

    The header is checked first, so an absurd size is refused after decompressing 540 bytes. The
    body is then streamed once (bounded memory): a file shorter than its header promises is
    refused (ITK would fill the missing voxels with zeros) and non-finite float voxels, which
    ITK turns into zeros, are counted. ``keep_data``: keep the voxels of a plain 3-D image
    (:data:`PLAIN_TYPES`, no scl scaling) as they stream by, so the caller need not decompress
    the file a second time (``NiftiScan.data``, in :func:`held_dtype`; NaN voxels stay NaN
    there). ``layout(header)``, called once the header passed its checks, gives the canonical
    layout to store them in (one array, no reordering copy afterwards); returning None keeps no
    voxels (the caller lets ITK read the file).
    """
    gz = path.name.lower().endswith(".gz")
    chunks = _gzip_chunks(path) if gz else _raw_chunks(path)
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 540:
            break
    header = parse_nifti_header(head, path)
    check_nifti_header(header, path)
    expected_end = header.vox_offset + header.data_bytes
    kind = FLOAT_TYPES.get(header.datatype)
    dtype = np.dtype(f"{header.order}{kind}") if kind else None
    plain = PLAIN_TYPES.get(header.datatype)
    keep = (keep_data and plain is not None and len(header.dims) == 3 and header.scl[0] in (0.0, 1.0)
            and header.scl[1] == 0.0 and np.dtype(plain).itemsize * 8 == header.bitpix)
    placed = layout(header) if keep and layout is not None else None
    if layout is not None and placed is None:
        keep = False
    sink = None
    data = None
    if keep:
        file_dtype = np.dtype(f"{header.order}{plain}")
        held = held_dtype(file_dtype)
        source_shape = header.dims[::-1]
        data = np.empty(placed.shape(source_shape) if placed else source_shape, held)
        sink = _SlabSink(placed.source_view(data) if placed else data, file_dtype, path)
    nonfinite = 0
    total = 0  # stream bytes seen so far
    carry = b""  # the bytes of a float voxel split between two chunks
    if dtype is None and not gz and sink is None:  # integer voxels, no decompression: the file size tells all
        chunks.close()  # type: ignore[attr-defined]
        head, total = b"", path.stat().st_size
        chunks = iter(())
    for chunk in _chain(head, chunks):
        start, total = total, total + len(chunk)
        lo, hi = max(header.vox_offset - start, 0), min(expected_end - start, len(chunk))
        if hi <= lo:
            continue
        if sink is not None:
            sink.write(chunk, lo, hi)  # the image bytes, straight to their place (counted there)
            continue
        if dtype is None:
            continue
        data_bytes = carry + chunk[lo:hi]
        whole = len(data_bytes) // dtype.itemsize * dtype.itemsize
        nonfinite += int(np.count_nonzero(~np.isfinite(np.frombuffer(data_bytes[:whole], dtype=dtype))))
        carry = data_bytes[whole:]
    if total < expected_end:
        raise InputError(f"{path} is truncated: {max(total - header.vox_offset, 0):,} bytes of image data where "
                         f"the header promises {header.data_bytes:,}; copy the file again")
    if sink is not None:
        sink.flush()
        nonfinite = sink.nonfinite
    return NiftiScan(header, nonfinite, data, placed)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


# ---- NRRD and MetaImage: text headers -----------------------------------------------------------

def _text_header(path: Path) -> list[str]:
    """The header lines of a NRRD or MetaImage file (up to the data; at most 64 kB read)."""
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
    lines = []
    for raw in data.split(b"\n"):
        line = raw.decode("latin-1").strip("\r")
        if not line and path.name.lower().endswith((".nrrd", ".nhdr")):
            break  # NRRD: a blank line ends the header
        lines.append(line)
        if line.replace(" ", "").startswith("ElementDataFile="):
            break  # MetaImage: the last header field
    return lines


def check_text_header(path: Path) -> None:
    """Refuse a NRRD / MetaImage file whose declared size exceeds the limits, before reading it."""
    sizes: list[int] | None = None
    for line in _text_header(path):
        key, sep, value = line.partition(":" if path.name.lower().endswith((".nrrd", ".nhdr")) else "=")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("sizes", "dimsize"):
            try:
                sizes = [int(v) for v in value.split()]
            except ValueError:
                raise InputError(f"{path}: the header's image size '{value.strip()}' is not a list of integers; "
                                 "the header is corrupt") from None
    if sizes is None:
        return  # ITK reports files without a size field
    if not sizes or any(s < 1 for s in sizes):
        raise InputError(f"{path}: the header declares image size {tuple(sizes)}; every size must be at least 1")
    check_voxel_count(int(np.prod(np.asarray(sizes, dtype=np.int64))),
                      f"{path}: the header declares {' x '.join(map(str, sizes))} =")
