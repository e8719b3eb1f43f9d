"""Derived sacrum labels: placed under the lowest disc, from marrow-like voxels, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from lvp.training.sacrum import SACRUM, derive_sacrum, lowest_disc, with_sacrum

SPACING = (1.0, 0.5, 0.5)


def _phantom(s1_intensity: float = 0.5) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...]]:
    """Two bodies and discs; an unlabelled S1-like block below the lowest disc."""
    sem = np.zeros((10, 220, 120), np.uint8)
    img = np.full(sem.shape, 0.1, np.float32)
    rng = np.random.default_rng(0)
    for top in (10, 70):  # bodies 40 voxels (20 mm) high, discs 10 voxels below them
        sem[2:8, top:top + 40, 30:80] = 1
        sem[2:8, top + 40:top + 50, 30:80] = 2
    img[sem == 1] = 0.5
    img[sem == 2] = 0.9
    s1 = (slice(2, 8), slice(120, 175), slice(30, 80))
    img[s1] = s1_intensity
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return sem, img, s1


def test_sacrum_fills_the_marrow_block_below_the_lowest_disc():
    sem, img, s1 = _phantom()
    sac = derive_sacrum(sem, img, SPACING)
    block = np.zeros(sem.shape, bool)
    block[s1] = True
    assert sac.any()
    assert not (sac & ~block).any(), "sacrum outside the marrow block"
    rows = np.flatnonzero(sac.any(axis=(0, 2)))
    assert rows.min() == 120  # starts at the disc's caudal face
    # The mirrored L5 body (40 voxels high) bounds the depth; it covers most of that part of the block.
    assert 150 <= rows.max() <= 165
    template = block.copy()
    template[:, 160:] = False
    assert (sac & template).sum() / template.sum() > 0.8
    lab = with_sacrum(sem, img, SPACING)
    assert set(np.unique(lab)) == {0, 1, 2, SACRUM} and (lab[sem > 0] == sem[sem > 0]).all()


def test_no_sacrum_where_the_tissue_below_is_not_marrow_like():
    sem, img, _ = _phantom(s1_intensity=0.95)  # brighter than any marrow: fluid or fat
    assert derive_sacrum(sem, img, SPACING).sum() == 0


def test_lowest_disc_and_errors():
    sem, img, _ = _phantom()
    d = lowest_disc(sem, SPACING)
    assert np.flatnonzero(d.any(axis=(0, 2))).min() == 110
    sem_nodisc = sem.copy()
    sem_nodisc[sem_nodisc == 2] = 0
    with pytest.raises(ValueError, match="no disc"):
        derive_sacrum(sem_nodisc, img, SPACING)


def test_committed_labels_are_reproduced(shared_data, repo_root):
    """The shipped derived masks equal what the code derives now (two cases), sacrum below the disc."""
    from lvp.datasets import derived_labels_path, discover_cases, load_case, load_derived_labels

    cases = {c.case_id: c for c in discover_cases(shared_data / "spider-t2-space")}
    for cid in ("spider5", "spider50"):
        vol, sem, _ = load_case(cases[cid])
        saved = load_derived_labels(derived_labels_path(repo_root / "models" / "training-labels", cid), vol.shape)
        assert np.array_equal(saved, with_sacrum(sem, vol.array, vol.spacing))
        disc_rows = np.flatnonzero(lowest_disc(sem, vol.spacing).any(axis=(0, 2)))
        sac_rows = np.flatnonzero((saved == SACRUM).any(axis=(0, 2)))
        assert sac_rows.size and np.median(sac_rows) > disc_rows.max()
