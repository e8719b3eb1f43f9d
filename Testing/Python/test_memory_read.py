"""Issue 13, memory on the read side: one copy of the image, in its stored type, for any input accepted.

* a plain NIfTI file is decompressed straight into canonical order, whatever its axis order and
  flips (the voxels and geometry ITK + :func:`lvp.io.volume.canonical_volume` give);
* a file ITK reads (NRRD, MetaImage) keeps ITK's buffer as the volume's array, its flips undone
  in place; float64 NIfTI voxels are held as float32 (values beyond float32 refused);
* peak memory of ``read_volume`` on 16-bit and float64 files stays near one held copy;
* the validator's memory policy: a file whose decoded image exceeds ``MAX_IMAGE_BYTES`` is
  refused from its header, before decompressing, with the size and what to do; a 16-bit whole
  field of view (1024 x 1024 x 280) passes.
"""

from __future__ import annotations

import itertools
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lvp.errors import InputError
from lvp.io.headers import check_nifti_header, parse_nifti_header
from lvp.io.read import read_volume
from lvp.io.validate import MAX_IMAGE_BYTES
from lvp.io.volume import canonical_volume, flip_in_place

# Every axis-aligned orientation: which LPS axis each ITK index axis follows, and its sign.
ORIENTATIONS = [(p, s) for p in itertools.permutations(range(3)) for s in itertools.product((1, -1), repeat=3)]


def _oriented(arr: np.ndarray, perm, signs) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    cols = np.zeros((3, 3))
    for i in range(3):
        cols[perm[i], i] = signs[i]
    img.SetDirection(tuple(cols.ravel()))
    img.SetSpacing((0.5, 0.7, 2.5))
    img.SetOrigin((3.0, -4.0, 12.5))
    return img


def _same_volume(vol, ref) -> None:
    assert vol.array.dtype == ref.array.dtype and vol.array.flags.c_contiguous
    assert np.array_equal(vol.array, ref.array)
    assert np.allclose(vol.affine, ref.affine) and vol.source == ref.source and vol.spacing == ref.spacing


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_every_orientation_reads_as_itk_reads_it(tmp_path, suffix):
    """48 axis orders and flips: NIfTI streamed into place, NRRD by ITK (flips in place); same as ITK."""
    arr = (np.random.default_rng(1).random((5, 6, 7)) * 4000).astype(np.int16)
    for k, (perm, signs) in enumerate(ORIENTATIONS):
        path = tmp_path / f"o{k}{suffix}"
        sitk.WriteImage(_oriented(arr, perm, signs), str(path))
        vol = read_volume(path, validate=False, require_sagittal=False)
        _same_volume(vol, canonical_volume(sitk.ReadImage(str(path))))
        # The exact way back: the source array again.
        assert np.array_equal(vol.to_source_array(), arr), (perm, signs)


def test_itk_buffer_becomes_the_volume_array(tmp_path):
    """A NRRD in canonical axis order with flipped axes: the array is ITK's buffer, reordered in place."""
    arr = (np.random.default_rng(2).random((6, 40, 30)) * 900).astype(np.uint16)
    path = tmp_path / "flipped.nrrd"
    # x -> A (flipped P), y -> S (flipped I), z -> R (flipped L): every canonical axis reversed.
    img = sitk.GetImageFromArray(arr)
    img.SetDirection((0, 0, -1, -1, 0, 0, 0, 1, 0))
    sitk.WriteImage(img, str(path))
    vol = read_volume(path, validate=False, require_sagittal=False)
    assert type(vol.array.base).__name__ == "_ItkPixels"  # no copy was made
    assert vol.source.flip == (True, True, True)
    _same_volume(vol, canonical_volume(sitk.ReadImage(str(path))))


def test_flip_in_place_equals_np_flip():
    a = np.random.default_rng(3).integers(0, 1000, (5, 6, 7)).astype(np.int16)
    for r in range(1, 4):
        for axes in itertools.combinations(range(3), r):
            b = a.copy()
            flip_in_place(b, axes)
            assert np.array_equal(b, np.flip(a, axes)), axes


def test_float64_nifti_is_held_as_float32(tmp_path):
    arr = np.random.default_rng(4).random((6, 40, 30)) * 3000.0
    path = tmp_path / "f8.nii.gz"
    sitk.WriteImage(_oriented(arr, (2, 0, 1), (1, -1, 1)), str(path))
    vol = read_volume(path, validate=False, require_sagittal=False)
    ref = canonical_volume(sitk.ReadImage(str(path)))
    assert vol.array.dtype == np.float32 and ref.array.dtype == np.float64
    assert np.array_equal(vol.array, ref.array.astype(np.float32))


def test_float64_beyond_float32_refused(tmp_path):
    arr = np.full((6, 40, 30), 100.0)
    arr[2, 3, 4] = 1e300
    path = tmp_path / "huge.nii"
    sitk.WriteImage(_oriented(arr, (2, 0, 1), (1, 1, 1)), str(path))
    with pytest.raises(InputError, match="beyond the float32 range"):
        read_volume(path, validate=False, require_sagittal=False)


def _write_large(path: Path, shape, dtype, direction) -> int:
    arr = np.zeros(shape, dtype)
    arr[:, shape[1] // 8: -shape[1] // 8, shape[2] // 8: -shape[2] // 8] = 700
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.25, 0.25, 1.0))
    img.SetDirection(direction)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.UseCompressionOn()
    writer.SetCompressionLevel(1)
    writer.Execute(img)
    return int(np.prod(shape))


@pytest.mark.parametrize("name,dtype,held", [("flipped16.nii.gz", np.int16, 2), ("flipped16.nrrd", np.uint16, 2),
                                              ("permuted16.nii.gz", np.int16, 2), ("double.nii.gz", np.float64, 4)])
def test_reading_holds_one_copy(tmp_path, name, dtype, held):
    """Peak memory of read_volume (fresh interpreter, VmHWM): about one held copy of the voxels.

    Flipped: a sagittal series stored head-up-first and right-to-left (as converters often store
    it), which used to cost a reordered second copy; permuted: slices along ITK's x.
    """
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs Linux /proc for the peak of one address space")
    if name.startswith("permuted"):
        shape, direction = (1536, 1024, 32), (1, 0, 0, 0, 0, 1, 0, -1, 0)  # x -> L, y -> A, z -> S
    else:
        shape, direction = (32, 1024, 1536), (0, 0, -1, 1, 0, 0, 0, 1, 0)  # x -> P, y -> S, z -> R
    if dtype == np.float64:
        shape = (32, 1024, 768)
    path = tmp_path / name
    voxels = _write_large(path, shape, dtype, direction)
    code = (
        "from lvp.io.read import read_volume\n"
        "def hwm():\n"
        "    return int(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1]) * 1024\n"
        "base = hwm()\n"
        f"v = read_volume({str(path)!r}, validate=False, require_sagittal=False)\n"
        "print(v.array.nbytes, v.array.dtype.itemsize, hwm() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    nbytes, itemsize, grew = (int(v) for v in out.stdout.split())
    assert itemsize == held and nbytes == voxels * held
    print(f"{name}: {nbytes / 2**20:.0f} MiB held, peak grew {grew / 2**20:.0f} MiB")
    # A NIfTI stored in another axis order is still placed straight; ITK's files need a copy then.
    assert grew < 1.25 * nbytes, (grew, nbytes)


def _header_bytes(tmp_path, dims, datatype, bitpix) -> bytearray:
    small = tmp_path / "small.nii"
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    img.SetSpacing((0.3, 0.3, 1.0))
    sitk.WriteImage(img, str(small))
    head = bytearray(small.read_bytes()[:352])
    struct.pack_into("<8h", head, 40, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<2h", head, 70, datatype, bitpix)
    return head


def _gzip_zeros(n_zeros: int, head: bytes = b"") -> bytes:
    """A gzip stream of ``head`` then ``n_zeros`` zero bytes, compressed 16 MB at a time (a few MB in all)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 24)
    parts = [comp.compress(head)]
    while n_zeros:
        n = min(n_zeros, len(block))
        parts.append(comp.compress(block[:n]))
        n_zeros -= n
    parts.append(comp.flush())
    return b"".join(parts)


def test_oversized_float_nifti_refused_before_decompressing(tmp_path):
    """A complete, valid float32 .nii.gz of 152 M voxels (608 MB decoded) is refused from its header."""
    dims = (1000, 760, 200)
    head = _header_bytes(tmp_path, dims, 16, 32)
    path = tmp_path / "float32_fov.nii.gz"
    path.write_bytes(_gzip_zeros(int(np.prod(dims)) * 4, head=bytes(head)))
    assert path.stat().st_size < 4_000_000  # 608 MB of zeros, compressed
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        read_volume(path)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(err.value)
    assert "1000 x 760 x 200 = 152,000,000 voxels of 32-bit float" in message and "0.61 GB" in message
    assert "crop" in message.lower() and "16-bit" in message
    assert seconds < 1.0 and peak < 50_000_000, (seconds, peak)


def test_oversized_float64_nrrd_refused_before_itk_reads_it(tmp_path):
    """ITK holds a NRRD's float64 voxels as they are: 80 M of them (640 MB) are refused from the header."""
    path = tmp_path / "double.nrrd"
    sizes = (500, 400, 400)
    header = ("NRRD0004\ntype: double\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {' '.join(map(str, sizes))}\nspace directions: (0,0.5,0) (0,0,-0.5) (1,0,0)\n"
              "kinds: domain domain domain\nendian: little\nencoding: gzip\nspace origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + _gzip_zeros(int(np.prod(sizes)) * 8))
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"500 x 400 x 400 = 80,000,000 voxels of 64-bit float data: 0\.64 GB"):
        read_volume(path)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("dims,datatype,bitpix,ok", [
    ((1024, 1024, 280), 4, 16, True),  # int16 whole field of view: 587 MB
    ((1024, 1024, 280), 512, 16, True),  # uint16
    ((1024, 1024, 280), 2, 8, True),  # uint8
    ((640, 512, 300), 64, 64, True),  # float64 98 M voxels: held as float32, 393 MB
    ((1024, 1024, 280), 16, 32, False),  # float32 whole field of view: 1.17 GB
    ((1024, 1024, 280), 64, 64, False),  # float64, held as float32: 1.17 GB
    ((1024, 1024, 150), 8, 32, False),  # int32: 629 MB
])
def test_memory_policy_on_headers(tmp_path, dims, datatype, bitpix, ok):
    head = bytes(_header_bytes(tmp_path, dims, datatype, bitpix))
    path = tmp_path / "x.nii"
    header = parse_nifti_header(head, path)
    if ok:
        check_nifti_header(header, path)
        return
    with pytest.raises(InputError, match="GB once decoded"):
        check_nifti_header(header, path)
    assert header.voxels * min(header.bitpix // 8, 4) > MAX_IMAGE_BYTES
