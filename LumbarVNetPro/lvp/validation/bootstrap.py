"""The patient bootstrap of the validation: resample patients (a patient's discs are correlated),
recompute a statistic, keep what is defined. One resampling for every CI of ``lvp validate``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np


def patient_bootstrap(cases: Sequence[str], stat: Callable[[np.ndarray], float], n_boot: int,
                      seed: int = 0) -> list[float]:
    """``stat`` over ``n_boot`` resamples of the patients (drawn with replacement, seeded); the
    finite values.

    ``cases``: the patient of each row. ``stat`` gets the row indices of a resample (every row of
    each drawn patient, in draw order); a resample where it raises ValueError or gives NaN (e.g.
    one class only) is dropped. Warnings of undefined resamples are silenced.
    """
    uniq = sorted(set(cases))
    rows_of: dict[str, list[int]] = {c: [] for c in uniq}
    for i, c in enumerate(cases):
        rows_of[c].append(i)
    rng = np.random.default_rng(seed)
    vals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            take = np.array([i for c in rng.choice(uniq, len(uniq)) for i in rows_of[c]], dtype=np.intp)
            try:
                v = stat(take)
            except ValueError:
                continue
            if np.isfinite(v):
                vals.append(v)
    return vals


def rounded(v: float | None) -> float | None:
    """A figure as reported: 3 decimals; None for none or a non-finite value."""
    return None if v is None or not np.isfinite(v) else round(float(v), 3)
