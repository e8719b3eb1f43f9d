"""The stage machinery of :mod:`lvp.pipeline`: progress points, timings, the failure policy, and
the release of the image's voxels once their last user (the report figure) is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import numpy as np

from lvp.io.volume import Volume

log = logging.getLogger("lvp.pipeline")

ProgressFn = Callable[[str, float], None]

# Where each stage starts on the 0..1 progress scale of one case (measured shares of the time).
# The figure comes before the DICOM outputs: it is the image's last user (see release_voxels).
STAGE_START = {"read": 0.0, "network": 0.1, "labelling": 0.6, "measure": 0.7, "grade": 0.78, "planes": 0.8,
               "axial": 0.83, "write": 0.85, "figure": 0.88, "dicom": 0.92, "done": 1.0}


class StageTimer:
    """Wall-clock seconds of each stage, in one dict (report.json ``timings_s``).

    ``with timer("read"): ...`` records the block's time under ``"read"`` (also when it raises),
    replacing an earlier value of that stage.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the ``with`` block as ``stage``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = time.perf_counter() - t0


class Stages:
    """Runs the post-network stages, recording timings and the first failure."""

    def __init__(self, report: dict, progress: ProgressFn | None, timer: StageTimer):
        self.report = report
        self.progress = progress
        self.timer = timer

    def tick(self, stage: str) -> None:
        """Report the start of ``stage`` to the progress callback."""
        if self.progress:
            self.progress(stage, STAGE_START[stage])

    def run(self, stage: str, fn: Callable[[], Any], despite: tuple[str, ...] = ()) -> Any:
        """Run ``fn`` unless an earlier stage failed; on error mark the report partial.

        ``despite``: earlier stages whose failure does not stop this one (the DICOM outputs are
        written when only the figure failed). The first failure stays the report's
        ``failed_stage``; a later one is added to the warnings, so neither is hidden.
        """
        failed = self.report["failed_stage"]
        if self.report["status"] != "complete" and failed not in despite:
            return None
        self.tick(stage)
        with self.timer(stage):
            try:
                return fn()
            except Exception as err:  # any failure here must become a partial report
                log.warning("stage %s failed: %s", stage, err, exc_info=log.isEnabledFor(logging.DEBUG))
                message = f"{type(err).__name__}: {err}"
                if self.report["status"] != "complete":
                    self.report["warnings"].append({"code": "stage_failed", "message": f"{stage} failed too: "
                                                                                       f"{message}"})
                    return None
                self.report["status"] = "partial"
                self.report["failed_stage"] = stage
                self.report["error"] = message
                return None


class ReleasedVoxels:
    """Stands in for an image's voxels after :func:`release_voxels`: shape and type stay known,
    any use of the voxels raises (a silent zero image would draw or measure nothing, unnoticed).
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, why: str):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._why = why

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise RuntimeError(f"the image's voxels were released ({self._why}); nothing may read them afterwards")

    __array__ = __getitem__ = __setitem__ = __iter__ = __len__ = _refuse

    def __getattr__(self, name: str) -> NoReturn:  # only for names not set above: nbytes, min, astype, ...
        self._refuse()


def release_voxels(volume: Volume, why: str) -> None:
    """Drop ``volume``'s voxels (its geometry, ``source`` and ``meta`` stay): the memory they hold
    goes back before the outputs that do not need them (issue 13: the DICOM SEG of a full field of
    view). A later use of ``volume.array`` raises :class:`RuntimeError` naming ``why``.
    """
    array = volume.array
    volume.array = ReleasedVoxels(array.shape, array.dtype, why)  # type: ignore[assignment]
