"""Analysis of a reader study from its reads as columns (:func:`lvp.readingdb.admin.export_columns`).

Units are (case, level) pairs with a reference grade; truth is the reference grade at or above the
pathology's clinical threshold (:mod:`lvp.readingdb.scales`); the ROC score is the ordinal grade.
Every comparison of the arms is **AI-assisted - manual** (positive: the AI helps). Per pathology:

* the complete reader x unit design (:mod:`lvp.study.design`), with dropped readers and cases and why,
  and n, positives and prevalence of every analysis;
* AUC, Obuchowski-Rockette / Hillis (random readers and cases): per level clustered by patient
  (Obuchowski 1997 covariance; primary), per level with levels assumed independent (what MRMCaov
  computes from the export), per patient (worst level); with the fixed-reader and fixed-case
  analyses; per lumbar level; per reader with the paired DeLong test;
* sensitivity and specificity: pooled reads (Wilson) and the reader average by OR-Hillis with a
  patient-deleted jackknife, with the test of the arms;
* weighted kappa and accuracy against the reference; agreement between readers per arm and its
  difference (:mod:`lvp.study.interrater`);
* the AI alone, and against the readers' average of each arm (:func:`lvp.study.mrmc.standalone_vs_readers`),
  Holm-adjusted across pathologies;
* reader-average AUC per arm and period (session), for carry-over and learning effects.

Reading time (:mod:`lvp.study.timing`) and the study flow (:func:`lvp.study.design.study_flow`) are
study-wide.
"""

from __future__ import annotations

import numpy as np

from lvp.readingdb.scales import scale_for
from lvp.study.agreement import accuracy, sensitivity_specificity, weighted_kappa
from lvp.study.design import Design, complete_design, pathology_grid, study_flow
from lvp.study.interrater import between_arms
from lvp.study.mrmc import obuchowski_rockette, standalone_vs_readers
from lvp.study.roc import auc_ci, delong_paired_test, empirical_auc, roc_points
from lvp.study.table import ARM_NAMES, columns_from_rows
from lvp.study.timing import reading_time

SIGN = "AI-assisted - manual"
MODS = ["ai_assisted", "manual"]  # OR differences are first - second: AI-assisted - manual


def holm(p_values: list[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values (NaN entries are left out of the family)."""
    p = np.asarray(p_values, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    adj = np.full(p.shape, np.nan)
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, (len(order) - i) * p[idx])
        adj[idx] = min(running, 1.0)
    return adj.tolist()


def _counts(truth: np.ndarray, clusters: np.ndarray | None = None) -> dict:
    n, pos = int(truth.size), int(truth.sum())
    out = {"units": n, "positives": pos, "negatives": n - pos, "prevalence": pos / n if n else float("nan")}
    if clusters is not None:
        out["clusters"] = int(np.unique(clusters).size)
    return out


def _or_summary(res, counts: dict, label: str) -> dict:  # an ORResult
    d = res.differences[0]
    frrc, rrfc = res.fixed_readers, res.fixed_cases
    return {
        "label": label, **counts, "readers": len(res.readers),
        "means": {m: res.single[m] for m in MODS},
        "difference": {**d, "label": SIGN},
        "f": res.f_stat, "df1": res.df1, "df2": res.df2, "p_value": res.p_value,
        "components": {"error": res.error_var, "cov1": res.cov1, "cov2": res.cov2, "cov3": res.cov3,
                       "var_reader": res.var_reader, "var_treatment_reader": res.var_treatment_reader},
        "fixed_readers": {"x2": frrc["x2"], "df": frrc["df"], "p_value": frrc["p_value"],
                          "difference": {**frrc["differences"][0], "label": SIGN}, "means": frrc["single"]},
        "fixed_cases": {"f": rrfc["f"], "df1": rrfc["df1"], "df2": rrfc["df2"], "p_value": rrfc["p_value"],
                        "difference": {**rrfc["differences"][0], "label": SIGN}, "means": rrfc["single"]},
        "per_reader_difference": frrc["per_reader"],
    }


def _try(func, *args, **kwargs):
    """Run an analysis; a refusal (ValueError: too few units, one class...) is reported, not raised."""
    try:
        return func(*args, **kwargs)
    except ValueError as err:
        return {"refused": str(err)}


def _auc_mrmc(truth: np.ndarray, x: np.ndarray, readers: list[str], label: str, clusters=None) -> dict:
    if truth.all() or not truth.any():
        raise ValueError(f"{int(truth.sum())} positive of {truth.size} units: AUC needs both classes")
    res = obuchowski_rockette(truth, x, modalities=MODS, readers=readers, covariance="delong", clusters=clusters)
    out = _or_summary(res, _counts(truth, clusters), label)
    if out["difference"]["se"] <= 1e-12:
        out["flag"] = "degenerate: zero variance of the difference (e.g. every reader perfect); no valid test"
        out["p_value"] = out["difference"]["p_value"] = float("nan")
    return out


def _proportion_mrmc(binary: np.ndarray, clusters: np.ndarray, readers: list[str], label: str) -> dict:
    if binary.shape[2] < 2 or np.unique(clusters).size < 2:
        raise ValueError(f"{label}: needs units in at least 2 patients ({binary.shape[2]} units)")
    res = obuchowski_rockette(np.ones(binary.shape[2]), binary.astype(float), modalities=MODS, readers=readers,
                              covariance="jackknife", fom="proportion", clusters=clusters)
    out = _or_summary(res, {"units": int(binary.shape[2]), "clusters": int(np.unique(clusters).size)}, label)
    out.pop("per_reader_difference")
    return out


def _per_reader(d: Design, truth_all: np.ndarray) -> tuple[dict, dict, dict]:
    """Per-reader AUC per arm (the reader's own units), paired DeLong tests, ROC points (complete units)."""
    aucs: dict = {arm: {} for arm in ARM_NAMES}
    paired: dict = {}
    roc: dict = {arm: {} for arm in ARM_NAMES}
    cu = d.kept_units
    for j, name in enumerate(d.readers):
        for a, arm in enumerate(ARM_NAMES):
            read = d.grid[a, j] >= 0
            if not read.any():
                continue
            r = _try(auc_ci, truth_all[read], d.grid[a, j, read].astype(float), interval="auto")
            aucs[arm][name] = r if isinstance(r, dict) else {**r.__dict__}
            if j in d.kept_readers and cu.any() and 0 < truth_all[cu].sum() < cu.sum():
                fpr, tpr = roc_points(truth_all[cu], d.grid[a, j, cu])
                roc[arm][name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        both = (d.grid[0, j] >= 0) & (d.grid[1, j] >= 0)
        if both.any():
            t = _try(delong_paired_test, truth_all[both], d.grid[1, j, both].astype(float),
                     d.grid[0, j, both].astype(float))
            paired[name] = t if isinstance(t, dict) else {
                "auc_ai_assisted": t.auc1, "auc_manual": t.auc2, "diff": t.diff, "label": SIGN, "se": t.se,
                "z": t.z, "p_value": t.p_value, "ci_low": t.ci_low, "ci_high": t.ci_high, "flag": t.flag,
                "units": int(both.sum())}
    return aucs, paired, roc


def _per_patient(d: Design, x: np.ndarray, truth_grade: np.ndarray, scale) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient truth (any level positive) and score (worst grade over the patient's levels)."""
    cases, idx = np.unique(d.unit_case[d.kept_units], return_inverse=True)
    worst_ref = np.full(cases.size, -10)
    np.maximum.at(worst_ref, idx, truth_grade)
    worst = np.full(x.shape[:2] + (cases.size,), -10.0)
    for a in range(x.shape[0]):
        for j in range(x.shape[1]):
            np.maximum.at(worst[a, j], idx, x[a, j])
    return worst_ref >= scale.positive_at, worst


def _period_auc(d: Design, session_of: np.ndarray, truth: np.ndarray) -> dict:
    """Reader-average AUC per arm and session (descriptive: the crossover's period effect)."""
    out: dict = {}
    for a, arm in enumerate(ARM_NAMES):
        for s in (1, 2):
            vals = []
            for j in d.kept_readers:
                sel = d.kept_units & (session_of[a, j, d.unit_case] == s)
                t = truth[sel]
                if t.any() and not t.all():
                    vals.append(float(empirical_auc(t, d.grid[a, j, sel].astype(float))[0]))
            if vals:
                out.setdefault(arm, {})[f"session_{s}"] = {"mean_reader_auc": float(np.mean(vals)),
                                                           "readers": len(vals)}
    return out


def _ai_standalone(d: Design, scale, truth_all: np.ndarray, x: np.ndarray, margin: float,
                   hypothesis: str, alpha: float) -> dict | None:
    has_ai = d.ai >= 0
    if not has_ai.any():
        return None
    t = truth_all[has_ai]
    s = d.ai[has_ai].astype(float)
    out: dict = {"units": int(has_ai.sum()), "positives": int(t.sum())}
    r = _try(auc_ci, t, s, interval="auto")
    out["auc"] = r if isinstance(r, dict) else {**r.__dict__}
    ss = sensitivity_specificity(t, d.ai[has_ai] >= scale.positive_at)
    out.update(sensitivity=ss.sensitivity, sens_ci=ss.sens_ci, specificity=ss.specificity, spec_ci=ss.spec_ci,
               kappa_quadratic=weighted_kappa(d.truth_grade[has_ai], d.ai[has_ai], scale.grades, "quadratic"))
    if 0 < t.sum() < t.size:
        fpr, tpr = roc_points(t, s)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    # Against the readers of each arm: complete units with an AI grade, clustered by patient.
    sel = has_ai[d.kept_units]
    cu = np.flatnonzero(d.kept_units)[sel]
    out["vs_readers"] = {}
    readers = [d.readers[j] for j in d.kept_readers]
    for a, arm in enumerate(ARM_NAMES):
        out["vs_readers"][arm] = _try(
            standalone_vs_readers, truth_all[cu], d.ai[cu].astype(float), x[a][:, sel], readers=readers,
            covariance="delong", clusters=d.unit_case[cu], margin=margin, hypothesis=hypothesis, alpha=alpha)
        if "refused" not in out["vs_readers"][arm]:
            out["vs_readers"][arm].update(label=f"AI alone - {arm} readers' mean AUC", units=int(cu.size),
                                          positives=int(truth_all[cu].sum()))
    return out


def _pathology(cols: dict, p_code: int, name: str, opts: dict) -> tuple[dict, Design]:
    scale = scale_for(name)
    d = complete_design(pathology_grid(cols, p_code), cols["cases"])
    truth_all = d.truth_grade >= scale.positive_at
    out: dict = {"scale": list(scale.grades), "positive_at": scale.positive_at,
                 "units_with_reference": int(d.truth_grade.size)}
    readers = [d.readers[j] for j in d.kept_readers]
    cu = d.kept_units
    truth = truth_all[cu]
    x = d.complete().astype(float)  # (2 arms in ARM_NAMES order, readers, units)
    xm = x[::-1]  # MODS order: ai_assisted first
    out["design"] = {"readers": readers, "readers_dropped": d.dropped_readers, **_counts(truth, d.unit_case[cu]),
                     "dropped": d.dropped_cases}
    out["per_reader_auc"], out["paired_delong"], out["roc"] = _per_reader(d, truth_all)
    out["auc"] = {"primary": "per_level_clustered", "analyses": {}}
    out["per_level"] = {}
    out["sens_spec"] = {"pooled": {}, "reader_average": {}}
    if len(readers) < 2 or not cu.any():
        out["auc"]["refused"] = (f"no complete design: {len(readers)} reader(s) read {int(cu.sum())} units "
                                 "in both arms (MRMC needs >= 2 readers)")
    else:
        an = out["auc"]["analyses"]
        an["per_level_clustered"] = _try(_auc_mrmc, truth, xm, readers,
                                         "per level, clustered by patient (Obuchowski 1997)", d.unit_case[cu])
        an["per_level_independent"] = _try(_auc_mrmc, truth, xm, readers,
                                           "per level, levels assumed independent (MRMCaov DeLong)")
        pt_truth, pt_score = _per_patient(d, xm, d.truth_grade[cu], scale)
        an["per_patient"] = _try(_auc_mrmc, pt_truth, pt_score, readers,
                                 "per patient: any level positive, score = worst level grade")
        for lv in np.unique(d.unit_level[cu]):
            sel = d.unit_level[cu] == lv
            out["per_level"][cols["levels"][lv]] = _try(_auc_mrmc, truth[sel], xm[:, :, sel], readers,
                                                        f"level {cols['levels'][lv]}")
        binary = xm >= scale.positive_at
        clusters = d.unit_case[cu]
        out["sens_spec"]["reader_average"]["sensitivity"] = _try(
            _proportion_mrmc, binary[:, :, truth], clusters[truth], readers, "sensitivity")
        out["sens_spec"]["reader_average"]["specificity"] = _try(
            _proportion_mrmc, ~binary[:, :, ~truth], clusters[~truth], readers, "specificity")
        out["agreement"] = between_arms(d.grid[:, d.kept_readers][:, :, cu], d.unit_case[cu], list(scale.grades),
                                        replicates=opts["bootstrap"], seed=opts["seed"], alpha=opts["alpha"],
                                        measurements=d.measurement[:, d.kept_readers][:, :, cu])
        out["period"] = _period_auc(d, opts["session_of"], truth_all)
    out["reference_agreement"] = {}
    for a, arm in enumerate(ARM_NAMES):
        read = d.grid[a] >= 0
        if not read.any():
            continue
        ref_g = np.broadcast_to(d.truth_grade, read.shape)[read]
        g = d.grid[a][read]
        ss = sensitivity_specificity(ref_g >= scale.positive_at, g >= scale.positive_at)
        out["sens_spec"]["pooled"][arm] = {"reads": int(read.sum()), "sensitivity": ss.sensitivity,
                                           "sens_ci": ss.sens_ci, "specificity": ss.specificity,
                                           "spec_ci": ss.spec_ci, "tp": ss.tp, "fn": ss.fn, "tn": ss.tn, "fp": ss.fp}
        lv = np.broadcast_to(d.unit_level, read.shape)[read]
        out["reference_agreement"][arm] = {
            "reads": int(read.sum()),
            "kappa_linear": weighted_kappa(ref_g, g, scale.grades, "linear"),
            "kappa_quadratic": weighted_kappa(ref_g, g, scale.grades, "quadratic"),
            "accuracy": accuracy(ref_g, g),
            "accuracy_per_level": {cols["levels"][v]: {"accuracy": accuracy(ref_g[lv == v], g[lv == v]),
                                                       "n": int((lv == v).sum())} for v in np.unique(lv)},
        }
    out["ai_standalone"] = (_ai_standalone(d, scale, truth_all, x, opts["margin"], opts["hypothesis"],
                                           opts["alpha"]) if cu.any() and len(readers) >= 2 else None)
    return out, d


def _session_lookup(cols: dict) -> np.ndarray:
    r = cols["reads"]
    s = np.zeros((2, len(cols["readers"]), len(cols["cases"])), dtype=np.int16)
    s[r["arm"], r["reader"], r["case"]] = r["session"]
    return s


def _adjust(results: dict) -> dict:
    """Holm across pathologies: the primary AUC comparison of the arms, and the AI alone vs each arm."""
    fam: dict = {"method": "Holm (1979), family = the pathologies analysed", "primary_auc": {}, "ai_vs_readers": {}}
    names = list(results)
    prim = [results[n]["auc"]["analyses"].get("per_level_clustered", {}) for n in names]
    adj = holm([p.get("p_value", np.nan) for p in prim])
    for n, p, a in zip(names, prim, adj):
        if "p_value" in p:
            p["p_holm"] = a
            fam["primary_auc"][n] = a
    for arm in ARM_NAMES:
        tests = [((results[n].get("ai_standalone") or {}).get("vs_readers") or {}).get(arm, {}) for n in names]
        adj = holm([t.get("p_value", np.nan) for t in tests])
        for n, t, a in zip(names, tests, adj):
            if "p_value" in t:
                t["p_holm"] = a
                fam["ai_vs_readers"].setdefault(arm, {})[n] = a
    return fam


def analyse(data, alpha: float = 0.05, margin: float = 0.0, hypothesis: str = "difference",
            bootstrap: int = 1000, seed: int = 0) -> dict:
    """Analyse a study: ``data`` is :func:`export_columns` output, or exported rows (list of dicts).

    ``margin`` / ``hypothesis`` (``difference``, ``non_inferiority``, ``superiority``) set the
    test of the AI alone against the readers (AUC scale); ``bootstrap``: case-bootstrap replicates
    for the agreement intervals.
    """
    cols = columns_from_rows(data) if isinstance(data, list) else data
    if cols["grades"]["read"].size == 0:
        raise ValueError("no submitted reads to analyse")
    opts = {"alpha": alpha, "margin": margin, "hypothesis": hypothesis, "bootstrap": bootstrap, "seed": seed,
            "session_of": _session_lookup(cols)}
    results, designs = {}, {}
    for code, name in sorted(enumerate(cols["pathologies"]), key=lambda t: t[1]):
        results[name], designs[name] = _pathology(cols, code, name, opts)
    opts.pop("session_of")
    return {
        "study": cols.get("study", ""),
        "sign_convention": SIGN,
        "options": opts,
        "readers": list(cols["readers"]),
        "cases": len(cols["cases"]),
        "flow": study_flow(cols, designs),
        "pathologies": results,
        "multiplicity": _adjust(results),
        "reading_time": reading_time(cols, alpha),
    }


__all__ = ["analyse", "holm"]
