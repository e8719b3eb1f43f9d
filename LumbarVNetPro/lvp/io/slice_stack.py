"""The integrity checks of a stack of slices, shared by the classic (one file per slice) and the
enhanced (multi-frame) DICOM readers: one orientation and pixel spacing, distinct positions, no gaps.

The checks find the problem; each reader words the error (it names files, or frames).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

GAP_TOLERANCE = 0.2  # relative deviation of a slice step from the median before it is a gap
SAME_POSITION_MM = 1e-3  # slices closer than this along the normal are at the same position


def same_grid(iop, ref_iop, spacing, ref_spacing) -> bool:  # 6-, 6-, 2-, 2-sequences
    """Whether a slice has the reference slice's orientation (to 1e-3) and pixel spacing (to 0.1 %)."""
    return bool(np.allclose(iop, ref_iop, atol=1e-3) and np.allclose(spacing, ref_spacing, rtol=1e-3))


class StackSteps(NamedTuple):
    """Slices in order along their normal, and the first problem of that order (None: none)."""

    order: np.ndarray  # slice indices, sorted by position along the normal
    steps: np.ndarray  # distances (mm) between neighbours in that order
    step: float  # the median step: the stack's slice spacing
    repeated: int | None  # index into ``steps`` of two slices at the same position (the closest pair)
    gap: int | None  # index into ``steps`` of the first step off the median by more than GAP_TOLERANCE


def stack_steps(heights) -> StackSteps:  # a 1-D array of positions along the normal, at least 2
    """Order slices by position and find repeated positions and gaps (a gap is looked for only
    where no position repeats).
    """
    heights = np.asarray(heights, float)
    order = np.argsort(heights, kind="stable")
    steps = np.diff(heights[order])
    step = float(np.median(steps))
    if np.any(steps < SAME_POSITION_MM):
        return StackSteps(order, steps, step, int(np.argmin(steps)), None)
    bad = np.abs(steps - step) > GAP_TOLERANCE * step
    return StackSteps(order, steps, step, None, int(np.argmax(bad)) if np.any(bad) else None)
