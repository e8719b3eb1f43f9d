"""Multi-reader multi-case comparison of modalities: Obuchowski-Rockette ANOVA with Hillis df.

Random readers and random cases (RRRC), factorial design (every reader reads every case in every
modality). The reader-modality figures of merit (empirical AUC by default) and their error
covariances, estimated by DeLong's method or by the case jackknife, give

* ``Error`` (variance), ``Cov1`` (same reader, different modality), ``Cov2`` (same modality,
  different reader), ``Cov3`` (different both), averaged over the pairs (Obuchowski & Rockette 1995);
* the test of equal modality means F = MS(T) / [MS(T:R) + r max(Cov2 - Cov3, 0)] with Hillis (2007)
  denominator degrees of freedom ddf_H = [MS(T:R) + r max(Cov2 - Cov3, 0)]^2 / [MS(T:R)^2 / ((t-1)(r-1))];
* pairwise differences with t-based confidence intervals on ddf_H, and single-modality intervals.

Validated against the published MRMCaov results for the Van Dyke et al. (1993) data (see
docs/reading-study.md and Testing/Python/test_study_mrmc.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from lvp.study.roc import delong_covariance


@dataclass
class ORResult:
    """Obuchowski-Rockette / Hillis analysis of t modalities read by r readers."""

    modalities: list[str]
    readers: list[str]
    fom: np.ndarray  # (t, r) figures of merit
    error_var: float
    cov1: float
    cov2: float
    cov3: float
    var_reader: float
    var_treatment_reader: float
    ms_t: float
    ms_tr: float
    f_stat: float
    df1: int
    df2: float
    p_value: float
    means: dict[str, float] = field(default_factory=dict)
    differences: list[dict] = field(default_factory=list)
    single: dict[str, dict] = field(default_factory=dict)


def _average_covariances(cov: np.ndarray, t: int, r: int) -> tuple[float, float, float, float]:
    """Average a (t*r x t*r) covariance (index = modality * r + reader) into Error, Cov1, Cov2, Cov3."""
    mod = np.repeat(np.arange(t), r)
    rdr = np.tile(np.arange(r), t)
    same_m = mod[:, None] == mod[None, :]
    same_r = rdr[:, None] == rdr[None, :]
    err = cov[same_m & same_r].mean()
    cov1 = cov[~same_m & same_r].mean() if t > 1 else float("nan")
    cov2 = cov[same_m & ~same_r].mean()
    cov3 = cov[~same_m & ~same_r].mean() if t > 1 else float("nan")
    return float(err), float(cov1), float(cov2), float(cov3)


def jackknife_covariance(truth, ratings, fom: Callable) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Figures of merit of each rating row and their case-jackknife covariance.

    ``ratings`` is (k, n cases); ``fom(truth, rating_row)`` computes one figure of merit.
    """
    truth = np.asarray(truth)
    x = np.asarray(ratings, dtype=float)
    k, n = x.shape
    full = np.array([fom(truth, x[i]) for i in range(k)])
    keep = np.ones(n, dtype=bool)
    pseudo = np.empty((n, k))
    for c in range(n):
        keep[c] = False
        pseudo[c] = [fom(truth[keep], x[i, keep]) for i in range(k)]
        keep[c] = True
    dev = pseudo - pseudo.mean(axis=0)
    return full, (n - 1) / n * dev.T @ dev


def _empirical_auc(truth, rating) -> float:  # noqa: ANN001
    return float(delong_covariance(truth, rating)[0][0])


def obuchowski_rockette(truth, ratings, modalities: list[str] | None = None,
                        readers: list[str] | None = None, covariance: str = "delong",
                        fom: Callable | None = None, alpha: float = 0.05) -> ORResult:  # noqa: ANN001
    """OR-Hillis RRRC analysis.

    ``ratings`` is a (t modalities, r readers, n cases) array of scores of the same cases; ``truth``
    the n binary case statuses. ``covariance`` is ``delong`` (empirical AUC only) or ``jackknife``
    (any ``fom(truth, rating)``; default empirical AUC).
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 3:
        raise ValueError("ratings must be (modalities, readers, cases)")
    t, r, n = x.shape
    if t < 2 or r < 2:
        raise ValueError("MRMC analysis needs at least 2 modalities and 2 readers")
    flat = x.reshape(t * r, n)
    if covariance == "delong":
        if fom is not None:
            raise ValueError("DeLong covariance is defined for the empirical AUC only")
        theta, cov = delong_covariance(truth, flat)
    elif covariance == "jackknife":
        theta, cov = jackknife_covariance(truth, flat, fom or _empirical_auc)
    else:
        raise ValueError("covariance must be 'delong' or 'jackknife'")
    theta = theta.reshape(t, r)
    err, cov1, cov2, cov3 = _average_covariances(cov, t, r)

    m_t, m_r, grand = theta.mean(axis=1), theta.mean(axis=0), theta.mean()
    ms_t = r * np.square(m_t - grand).sum() / (t - 1)
    ms_r = t * np.square(m_r - grand).sum() / (r - 1)
    ms_tr = np.square(theta - m_t[:, None] - m_r[None, :] + grand).sum() / ((t - 1) * (r - 1))
    denom = ms_tr + r * max(cov2 - cov3, 0.0)
    # Degenerate data (identical modalities): no evidence of a difference rather than 0/0.
    if denom > 0:
        f_stat = ms_t / denom
    else:
        f_stat = 0.0 if ms_t <= 1e-15 else float("inf")
    df2 = denom**2 / (ms_tr**2 / ((t - 1) * (r - 1))) if ms_tr > 0 else float("inf")
    p = float(stats.f.sf(f_stat, t - 1, df2)) if f_stat > 0 else 1.0

    mods = modalities or [str(i + 1) for i in range(t)]
    rdrs = readers or [str(j + 1) for j in range(r)]
    res = ORResult(
        modalities=mods, readers=rdrs, fom=theta, error_var=err, cov1=cov1, cov2=cov2, cov3=cov3,
        # E[MS(R)] - E[MS(T:R)] = t var_R + t (Cov1 - Cov3) (Hillis 2007).
        var_reader=(ms_r - ms_tr) / t - cov1 + cov3,
        var_treatment_reader=ms_tr - err + cov1 + cov2 - cov3,
        ms_t=float(ms_t), ms_tr=float(ms_tr), f_stat=float(f_stat), df1=t - 1, df2=float(df2), p_value=p,
        means={m: float(v) for m, v in zip(mods, m_t)},
    )
    se_diff = np.sqrt(2 / r * denom)
    q = stats.t.ppf(1 - alpha / 2, df2)
    for a in range(t):
        for b in range(a + 1, t):
            d = float(m_t[a] - m_t[b])
            tval = d / se_diff if se_diff > 0 else (0.0 if d == 0 else float("inf"))
            res.differences.append({
                "comparison": f"{mods[a]} - {mods[b]}", "estimate": d, "se": float(se_diff), "df": float(df2),
                "ci_low": float(d - q * se_diff), "ci_high": float(d + q * se_diff), "t": float(tval),
                "p_value": float(2 * stats.t.sf(abs(tval), df2)),
            })
    for a in range(t):
        block = cov[a * r:(a + 1) * r, a * r:(a + 1) * r]
        cov2_i = float(block[~np.eye(r, dtype=bool)].mean())
        ms_r_i = float(np.square(theta[a] - m_t[a]).sum() / (r - 1))
        var = ms_r_i / r + max(cov2_i, 0.0)
        df_i = (ms_r_i + r * max(cov2_i, 0.0)) ** 2 / (ms_r_i**2 / (r - 1)) if ms_r_i > 0 else float("inf")
        qi = stats.t.ppf(1 - alpha / 2, df_i)
        se_i = float(np.sqrt(var))
        res.single[mods[a]] = {"estimate": float(m_t[a]), "ms_r": ms_r_i, "cov2": cov2_i, "se": se_i,
                               "df": float(df_i),
                               # Figures of merit are proportions: clip to [0, 1] as MRMCaov does.
                               "ci_low": float(max(m_t[a] - qi * se_i, 0.0)),
                               "ci_high": float(min(m_t[a] + qi * se_i, 1.0))}
    return res
