"""Shared helpers for the phantom-based tests (labelling, measurements, grades, planes)."""

from __future__ import annotations

import numpy as np

from lvp.io.volume import Volume, canonical_volume
from lvp.labelling import Labelling, label_levels
from lvp.validation.phantom import Phantom, make_phantom


def read(phantom: Phantom) -> tuple[Volume, np.ndarray, np.ndarray]:
    """Canonical image volume, semantic array and level array of a phantom (arrays owned)."""
    vol = canonical_volume(phantom.image)
    vol.array = np.array(vol.array)
    sem = np.array(canonical_volume(phantom.semantic).array)
    lev = np.array(canonical_volume(phantom.levels).array)
    return vol, sem, lev


def labelled(**options) -> tuple[Phantom, Volume, Labelling, np.ndarray]:
    """Make a phantom, label it from its semantic map; returns (phantom, volume, labelling, levels)."""
    options.setdefault("spacing", (1.5, 1.0, 1.0))
    ph = make_phantom(**options)
    vol, sem, lev = read(ph)
    return ph, vol, label_levels(sem, vol), lev
