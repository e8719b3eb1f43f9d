"""Issue 13, memory on the network side: the network, restore and their memory follow the image's content.

* all-zero edge slices (padding) are cut off before the network: a padded image gets, inside,
  exactly what the unpadded image gets (same network input, classes and probabilities), and
  background with probability 1.0 in the padding;
* margins of a few empty slices (SPIDER's slabs have 0-7) are kept, so ordinary inputs keep
  their grid;
* ONNX Runtime runs without a pre-planned memory pattern;
* an input whose case would exceed the memory budget is refused before the network runs, with
  its content's extent, and the estimate grows with the content, not with the padding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from lvp.errors import InputError
from lvp.io import validate
from lvp.io.volume import canonical_volume
from lvp.preprocess import GridProbability, PlacedProbability
from lvp.segmenter import NetworkSegmenter, occupied_box, occupied_slices


@pytest.fixture(scope="module")
def segmenter():
    return NetworkSegmenter(device="cpu")


@pytest.fixture(scope="module")
def sample(sample_case):
    vol = canonical_volume(sitk.ReadImage(str(sample_case)))
    # Without the sample's own few empty columns, so its padded copy's content box is exactly it.
    return dataclasses.replace(vol, array=np.array(vol.array[occupied_box(occupied_slices(vol.array), 0.0)]))


def _padded(volume, before=(40, 100, 150), after=(60, 20, 90)):
    a = volume.array
    big = np.zeros(tuple(n + b + c for n, b, c in zip(a.shape, before, after)), a.dtype)
    inside = tuple(slice(b, b + n) for b, n in zip(before, a.shape))
    big[inside] = a
    return dataclasses.replace(volume, array=big), inside


def test_small_margins_are_kept_large_padding_is_cut():
    image = np.zeros((30, 200, 100), np.uint8)
    image[3:27, 5:198, 0:100] = 1  # margins 6/30 (20 %), 7/200 (3.5 %), none
    box = occupied_box(occupied_slices(image))
    assert box == (slice(3, 27), slice(0, 200), slice(0, 100))
    assert occupied_box(occupied_slices(np.zeros((4, 5, 6), np.uint8))) == (slice(0, 4), slice(0, 5), slice(0, 6))


def test_padding_costs_the_network_nothing(segmenter, sample):
    """Inside the padding the result is the unpadded image's, bit for bit; the network saw the same input."""
    seen = []
    run = segmenter.logits

    def recording(x, **options):
        seen.append(x.copy())
        return run(x, **options)

    segmenter.logits = recording  # the real network runs; only its input is kept for comparison
    try:
        plain = segmenter.segment(sample)
        padded, inside = _padded(sample)
        out = segmenter.segment(padded)
    finally:
        del segmenter.logits
    assert seen[0].shape == seen[1].shape and np.array_equal(seen[0], seen[1])
    assert np.array_equal(out.semantic[inside], plain.semantic)
    assert np.count_nonzero(out.semantic) == np.count_nonzero(plain.semantic)
    prob = out.probability
    assert isinstance(prob, PlacedProbability) and prob.shape == padded.shape
    assert np.array_equal(prob[inside], np.asarray(plain.probability))
    assert prob[0:40].min() == 1.0 and prob[:, :, -90:].min() == 1.0  # padding: certain background
    # The class map's padding is never written: its memory is the content's.
    assert prob.nbytes == plain.probability.nbytes


def test_placed_probability_reads_like_its_array():
    rng = np.random.default_rng(5)
    grid = rng.random((4, 6, 5)).astype(np.float32)
    inner = GridProbability(grid, [np.repeat(np.arange(4), 2), np.repeat(np.arange(6), 2), np.repeat(np.arange(5), 2)])
    box = (slice(3, 11), slice(2, 14), slice(5, 15))
    placed = PlacedProbability(inner, box, (16, 20, 22))
    full = np.ones((16, 20, 22), np.float32)
    full[box] = np.asarray(inner)
    assert np.array_equal(np.asarray(placed), full)
    for key in [(slice(0, 5), slice(1, 19), slice(4, 9)), (slice(10, 16),), (slice(0, 2), slice(0, 2), slice(0, 2))]:
        assert np.array_equal(placed[key], full[key]), key


def test_onnx_runtime_plans_no_memory_pattern(segmenter):
    assert segmenter._session.get_session_options().enable_mem_pattern is False


def test_over_budget_refused_before_the_network_with_the_content_extent(segmenter, sample, monkeypatch):
    """The estimate grows with the content (the padded sample's exceeds the plain one's by its image bytes only)."""
    plain_need = validate.working_memory(sample.array.nbytes, sample.array.size,
                                         segmenter.grid_voxels(sample.shape, sample.spacing))
    padded, inside = _padded(sample)
    box = occupied_box(occupied_slices(padded.array))
    assert box == inside
    padded_need = validate.working_memory(padded.array.nbytes, sample.array.size,
                                          segmenter.grid_voxels(sample.shape, sample.spacing))
    assert padded_need - plain_need == padded.array.nbytes - sample.array.nbytes
    monkeypatch.setattr(validate, "MEMORY_BUDGET_BYTES", plain_need - 1)  # a machine with less memory
    ran = []
    run = segmenter.logits
    segmenter.logits = lambda x, **options: ran.append(x.shape) or run(x, **options)
    try:
        with pytest.raises(InputError) as err:
            segmenter.segment(sample)
    finally:
        del segmenter.logits
    assert not ran
    extent = " x ".join(f"{n * s:.0f}" for n, s in zip(sample.shape, sample.spacing))
    assert f"content spans {extent} mm" in str(err.value) and "Crop the series" in str(err.value)
    monkeypatch.setattr(validate, "MEMORY_BUDGET_BYTES", plain_need)
    assert segmenter.segment(sample).semantic.any()


def test_reading_inside_the_interpolated_box_copies_nothing():
    """The labelling reads the structures' box: a read-only view of the values held, equal to the copy."""
    from lvp.preprocess import GridInfo, restore

    info = GridInfo((15, 200, 150), (8, 94, 70), (8, 96, 96), (0, 1, 13))
    g = np.zeros((4, 8, 96, 96), np.float32)
    g[0] = 3
    g[1, 2:6, 31:61, 43:73] = 6
    g += np.random.default_rng(7).normal(size=g.shape).astype(np.float32) * 0.3
    _, prob = restore(g, info)
    assert prob.box is not None
    inner = tuple(slice(b.start + 1, b.stop - 1) for b in prob.box)
    view = prob[inner]
    assert np.shares_memory(view, prob.values) and not view.flags.writeable
    full = np.asarray(prob)
    assert np.array_equal(view, full[inner]) and full.flags.writeable and not np.shares_memory(full, prob.values)
    placed = PlacedProbability(prob, (slice(5, 20), slice(0, 200), slice(10, 160)), (30, 200, 170))
    shifted = tuple(slice(s.start + o, s.stop + o) for s, o in zip(inner, (5, 0, 10)))
    assert np.shares_memory(placed[shifted], prob.values)


def test_memory_limit_raises_the_budget_and_the_image_limit_together(monkeypatch):
    """$LVP_MEMORY_LIMIT_MIB: the case budget and the largest image held scale together; nonsense is refused."""
    monkeypatch.delenv(validate.MEMORY_LIMIT_ENV, raising=False)
    assert validate.memory_budget_bytes() == validate.MEMORY_BUDGET_BYTES
    assert validate.image_bytes_limit() == validate.MAX_IMAGE_BYTES
    monkeypatch.setenv(validate.MEMORY_LIMIT_ENV, "4096")
    assert validate.memory_budget_bytes() == 4096 * 2**20
    assert validate.image_bytes_limit() == 4 * validate.MAX_IMAGE_BYTES
    validate.check_image_bytes(1024 * 1024 * 280, 4)  # a float32 full FOV: refused at 1 GiB, held at 4 GiB
    monkeypatch.setenv(validate.MEMORY_LIMIT_ENV, "100")
    with pytest.raises(InputError, match="at least 256 MiB"):
        validate.memory_budget_bytes()
    monkeypatch.setenv(validate.MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(InputError, match="not a whole number"):
        validate.memory_budget_bytes()
    monkeypatch.delenv(validate.MEMORY_LIMIT_ENV)
    with pytest.raises(InputError, match="--memory-limit MIB"):
        validate.check_image_bytes(1024 * 1024 * 280, 4)


def test_lvp_infer_memory_limit_refuses_or_runs_a_real_case_and_leaves_the_environment(tmp_path, shared_data,
                                                                                       monkeypatch, capsys):
    """A SPIDER case needs ~280 MiB: refused with --memory-limit 256 (naming the limit and how to raise
    it), complete with the default; the option holds for its run only (a warm worker's next job)."""
    import os

    from lvp.cli import main

    monkeypatch.delenv(validate.MEMORY_LIMIT_ENV, raising=False)
    case = shared_data / "spider-t2-space" / "spider110_t2.nii.gz"
    assert main(["infer", str(case), "-o", str(tmp_path / "small"), "--memory-limit", "256", "-q",
                 "--device", "cpu"]) == 2
    said = capsys.readouterr().err
    assert "more than the 256 MiB a case may use" in said and "--memory-limit MIB" in said
    assert not (tmp_path / "small").exists()
    assert validate.MEMORY_LIMIT_ENV not in os.environ
    assert main(["infer", str(case), "-o", str(tmp_path / "default"), "-q", "--device", "cpu"]) == 0
    assert (tmp_path / "default" / "report.json").is_file()
