"""Multi-reader multi-case comparison of modalities: Obuchowski-Rockette ANOVA with Hillis df.

Random readers and random cases (RRRC), factorial design (every reader reads every case in every
modality). The reader-modality figures of merit (empirical AUC by default) and their error
covariances, estimated by DeLong's method or by the case jackknife, give

* ``Error`` (variance), ``Cov1`` (same reader, different modality), ``Cov2`` (same modality,
  different reader), ``Cov3`` (different both), averaged over the pairs (Obuchowski & Rockette 1995);
* the test of equal modality means F = MS(T) / [MS(T:R) + r max(Cov2 - Cov3, 0)] with Hillis (2007)
  denominator degrees of freedom ddf_H = [MS(T:R) + r max(Cov2 - Cov3, 0)]^2 / [MS(T:R)^2 / ((t-1)(r-1))];
* pairwise differences with t-based confidence intervals on ddf_H, and single-modality intervals.

Also the fixed-reader (random cases, chi-square) and fixed-case (random readers, F on MS(T:R))
analyses (Hillis 2007 / MRMCaov), reader-specific differences, a cluster-aware covariance (levels
of one patient: Obuchowski 1997 DeLong, or the patient-deleted jackknife), a fast exact jackknife for
proportions (sensitivity, specificity), and the comparison of a standalone algorithm with the
readers' average (:func:`standalone_vs_readers`).

Validated against the published MRMCaov results for the Van Dyke et al. (1993) data (see
docs/reading-study.md and Testing/Python/test_study_mrmc.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from lvp.study.roc import clustered_delong_covariance, delong_covariance, empirical_auc


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
    fixed_readers: dict = field(default_factory=dict)
    fixed_cases: dict = field(default_factory=dict)
    covariance: np.ndarray | None = None


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


def jackknife_covariance(truth, ratings, fom: Callable | str,
                         clusters=None) -> tuple[np.ndarray, np.ndarray]:
    """Figures of merit of each rating row and their case-jackknife covariance.

    ``ratings`` is (k, n cases); ``fom(truth, rating_row)`` computes one figure of merit, or
    ``fom="proportion"``: the mean of 0/1 ratings (e.g. sensitivity over the positive units), whose
    leave-out values are exact in closed form. ``clusters`` (one label per case): delete a whole
    cluster at a time (a patient and all its levels) instead of one case.
    """
    truth = np.asarray(truth)
    x = np.asarray(ratings, dtype=float)
    k, n = x.shape
    if clusters is None:
        cl = np.arange(n)
    else:
        cl = np.unique(np.asarray(clusters), return_inverse=True)[1]
    g = int(cl.max()) + 1 if n else 0
    if g < 2:
        raise ValueError("the jackknife needs at least 2 cases (clusters)")
    if isinstance(fom, str):
        if fom != "proportion":
            raise ValueError("fom must be a function or 'proportion'")
        full = x.mean(axis=1)
        sums = np.stack([np.bincount(cl, weights=x[i], minlength=g) for i in range(k)], axis=1)  # (g, k)
        sizes = np.bincount(cl, minlength=g)
        pseudo = (x.sum(axis=1)[None, :] - sums) / (n - sizes)[:, None]
    else:
        full = np.array([fom(truth, x[i]) for i in range(k)])
        pseudo = np.empty((g, k))
        for c in range(g):
            keep = cl != c
            pseudo[c] = [fom(truth[keep], x[i, keep]) for i in range(k)]
    dev = pseudo - pseudo.mean(axis=0)
    return full, (g - 1) / g * dev.T @ dev


def _empirical_auc(truth, rating) -> float:
    return float(empirical_auc(truth, rating)[0])


def fom_covariance(truth, flat, covariance: str = "delong", fom: Callable | str | None = None,
                   clusters=None) -> tuple[np.ndarray, np.ndarray]:
    """Figures of merit of the rows of ``flat`` (k, n) and their covariance by ``covariance``.

    ``delong`` (empirical AUC; Obuchowski's clustered form when ``clusters`` is given) or
    ``jackknife`` (any ``fom``; cluster-deleted when ``clusters`` is given).
    """
    if covariance == "delong":
        if fom is not None:
            raise ValueError("DeLong covariance is defined for the empirical AUC only")
        if clusters is not None:
            return clustered_delong_covariance(truth, flat, clusters)
        return delong_covariance(truth, flat)
    if covariance == "jackknife":
        return jackknife_covariance(truth, flat, fom or _empirical_auc, clusters)
    raise ValueError("covariance must be 'delong' or 'jackknife'")


def obuchowski_rockette(truth, ratings, modalities: list[str] | None = None,
                        readers: list[str] | None = None, covariance: str = "delong",
                        fom: Callable | str | None = None, alpha: float = 0.05,
                        clusters=None) -> ORResult:
    """OR-Hillis RRRC analysis, with the fixed-reader and fixed-case analyses alongside.

    ``ratings`` is a (t modalities, r readers, n cases) array of scores of the same cases; ``truth``
    the n binary case statuses. ``covariance`` is ``delong`` (empirical AUC only) or ``jackknife``
    (any ``fom(truth, rating)`` or ``"proportion"``; default empirical AUC). ``clusters``: a label
    per case for clustered cases (see :func:`fom_covariance`). Differences are modality a - b for
    a listed before b.
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 3:
        raise ValueError("ratings must be (modalities, readers, cases)")
    t, r, n = x.shape
    if t < 2 or r < 2:
        raise ValueError("MRMC analysis needs at least 2 modalities and 2 readers")
    flat = x.reshape(t * r, n)
    theta, cov = fom_covariance(truth, flat, covariance, fom, clusters)
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
        means={m: float(v) for m, v in zip(mods, m_t)}, covariance=cov,
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
    res.fixed_readers = _fixed_readers(theta, cov, err, cov1, cov2, cov3, ms_t, mods, rdrs, alpha)
    res.fixed_cases = _fixed_cases(theta, ms_t, ms_tr, mods, alpha)
    return res


def _fixed_readers(theta: np.ndarray, cov: np.ndarray, err: float, cov1: float, cov2: float, cov3: float,
                   ms_t: float, mods: list[str], rdrs: list[str], alpha: float) -> dict:
    """Fixed readers, random cases (FRRC): chi-square on Error - Cov1 + (r - 1)(Cov2 - Cov3)."""
    t, r = theta.shape
    denom = err - cov1 + (r - 1) * max(cov2 - cov3, 0.0)
    x2 = (t - 1) * ms_t / denom if denom > 0 else (0.0 if ms_t <= 1e-15 else float("inf"))
    out = {"x2": float(x2), "df": t - 1, "p_value": float(stats.chi2.sf(x2, t - 1)) if x2 > 0 else 1.0,
           "denominator": float(denom), "differences": [], "single": {}, "per_reader": []}
    z = stats.norm.ppf(1 - alpha / 2)
    m_t = theta.mean(axis=1)
    se = float(np.sqrt(2 / r * denom)) if denom > 0 else 0.0
    for a in range(t):
        for b in range(a + 1, t):
            d = float(m_t[a] - m_t[b])
            zv = d / se if se > 0 else (0.0 if d == 0 else float("inf"))
            out["differences"].append({"comparison": f"{mods[a]} - {mods[b]}", "estimate": d, "se": se,
                                       "ci_low": d - z * se, "ci_high": d + z * se, "z": zv,
                                       "p_value": float(2 * stats.norm.sf(abs(zv)))})
            for j in range(r):
                ia, ib = a * r + j, b * r + j
                dj = float(theta[a, j] - theta[b, j])
                sj = float(np.sqrt(max(cov[ia, ia] + cov[ib, ib] - 2 * cov[ia, ib], 0.0)))
                zj = dj / sj if sj > 0 else (0.0 if dj == 0 else float("inf"))
                out["per_reader"].append({"reader": rdrs[j], "comparison": f"{mods[a]} - {mods[b]}",
                                          "estimate": dj, "se": sj, "ci_low": dj - z * sj,
                                          "ci_high": dj + z * sj, "z": zj,
                                          "p_value": float(2 * stats.norm.sf(abs(zj)))})
    for a in range(t):
        block = cov[a * r:(a + 1) * r, a * r:(a + 1) * r]
        var_e = float(np.diag(block).mean())
        c2 = float(block[~np.eye(r, dtype=bool)].mean())
        se_a = float(np.sqrt(max((var_e + (r - 1) * max(c2, 0.0)) / r, 0.0)))
        out["single"][mods[a]] = {"estimate": float(m_t[a]), "se": se_a, "ci_low": float(max(m_t[a] - z * se_a, 0)),
                                  "ci_high": float(min(m_t[a] + z * se_a, 1))}
    return out


def _fixed_cases(theta: np.ndarray, ms_t: float, ms_tr: float, mods: list[str], alpha: float) -> dict:
    """Random readers, fixed cases (RRFC): F = MS(T) / MS(T:R) on (t - 1, (t - 1)(r - 1)) df."""
    t, r = theta.shape
    df2 = (t - 1) * (r - 1)
    f = ms_t / ms_tr if ms_tr > 0 else (0.0 if ms_t <= 1e-15 else float("inf"))
    out = {"f": float(f), "df1": t - 1, "df2": df2, "p_value": float(stats.f.sf(f, t - 1, df2)) if f > 0 else 1.0,
           "differences": [], "single": {}}
    q = stats.t.ppf(1 - alpha / 2, df2)
    m_t = theta.mean(axis=1)
    se = float(np.sqrt(2 * ms_tr / r))
    for a in range(t):
        for b in range(a + 1, t):
            d = float(m_t[a] - m_t[b])
            tv = d / se if se > 0 else (0.0 if d == 0 else float("inf"))
            out["differences"].append({"comparison": f"{mods[a]} - {mods[b]}", "estimate": d, "se": se,
                                       "df": df2, "ci_low": d - q * se, "ci_high": d + q * se, "t": tv,
                                       "p_value": float(2 * stats.t.sf(abs(tv), df2))})
    qs = stats.t.ppf(1 - alpha / 2, r - 1)
    for a in range(t):
        ms_r = float(np.square(theta[a] - m_t[a]).sum() / (r - 1))
        se_a = float(np.sqrt(ms_r / r))
        out["single"][mods[a]] = {"estimate": float(m_t[a]), "se": se_a, "df": r - 1,
                                  "ci_low": float(m_t[a] - qs * se_a), "ci_high": float(m_t[a] + qs * se_a)}
    return out


def standalone_vs_readers(truth, standalone, reader_ratings, readers: list[str] | None = None,
                          covariance: str = "delong", fom: Callable | str | None = None, clusters=None,
                          margin: float = 0.0, hypothesis: str = "difference", alpha: float = 0.05) -> dict:
    """Standalone algorithm vs the readers' average: difference algorithm - mean reader, random readers and cases.

    The reader-by-reader differences d_j = FOM(algorithm) - FOM(reader j) share the algorithm's
    error and the cases, so their covariance comes from the joint (DeLong or jackknife) covariance
    of [algorithm, readers]; the mean difference is then analysed as a single-test OR-Hillis
    problem: var = MS(d) / r + max(Cov2(d), 0), Hillis df = (MS(d) + r max(Cov2, 0))^2 / (MS(d)^2 / (r - 1)).

    ``hypothesis``: ``difference`` (two-sided, H0: d = 0), ``non_inferiority`` (one-sided,
    H0: d <= -margin) or ``superiority`` (one-sided, H0: d <= margin; margin 0 by default).
    """
    if hypothesis not in ("difference", "non_inferiority", "superiority"):
        raise ValueError("hypothesis must be 'difference', 'non_inferiority' or 'superiority'")
    if margin < 0:
        raise ValueError("the margin is a non-negative FOM difference")
    x = np.asarray(reader_ratings, dtype=float)
    r = x.shape[0]
    if r < 2:
        raise ValueError("comparing with the readers' average needs at least 2 readers")
    flat = np.vstack([np.asarray(standalone, dtype=float)[None, :], x])
    theta, cov = fom_covariance(truth, flat, covariance, fom, clusters)
    d = theta[0] - theta[1:]
    # cov(d_j, d_k) = Var(A) - Cov(A, j) - Cov(A, k) + Cov(j, k)
    c = cov[0, 0] - cov[0, 1:][:, None] - cov[0, 1:][None, :] + cov[1:, 1:]
    mean = float(d.mean())
    ms = float(np.square(d - mean).sum() / (r - 1))
    cov2 = float(c[~np.eye(r, dtype=bool)].mean())
    denom = ms + r * max(cov2, 0.0)
    se = float(np.sqrt(denom / r))
    df = denom**2 / (ms**2 / (r - 1)) if ms > 0 else float("inf")
    q = stats.t.ppf(1 - alpha / 2, df)
    if se > 0:
        if hypothesis == "difference":
            tv = mean / se
            p = float(2 * stats.t.sf(abs(tv), df))
        else:
            shift = margin if hypothesis == "non_inferiority" else -margin
            tv = (mean + shift) / se
            p = float(stats.t.sf(tv, df))
    else:
        tv, p = float("nan"), float("nan")
    return {"standalone": float(theta[0]), "reader_mean": float(theta[1:].mean()),
            "per_reader": dict(zip(readers or [str(j + 1) for j in range(r)], map(float, theta[1:]))),
            "difference": mean, "se": se, "df": float(df), "ci_low": mean - q * se, "ci_high": mean + q * se,
            "t": float(tv), "p_value": p, "hypothesis": hypothesis, "margin": float(margin),
            "ms_d": ms, "cov2_d": cov2, "readers": r}
