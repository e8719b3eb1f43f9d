"""The axis-aligned orientations the reading and writing tests run through (ITK direction columns)."""

from __future__ import annotations

import itertools

import numpy as np


def axis_orientations() -> list[np.ndarray]:
    """24 direction matrices (columns: the image axes in LPS): every axis order, four sign patterns each."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in [(1, 1, 1), (-1, 1, -1), (1, -1, 1), (-1, -1, -1)]:
            cols = np.zeros((3, 3))
            for i, (c, s) in enumerate(zip(perm, signs)):
                cols[c, i] = s
            out.append(cols)
    return out
