"""HTML report of a reader study: flow, AUC (MRMC), sensitivity/specificity, agreement, AI alone, time.

Figures are drawn with matplotlib's Agg backend (no display) and embedded as PNG data URIs, so the
report is one self-contained file. Every difference is labelled AI-assisted - manual; p-values
below 0.001 print as "< 0.001"; every analysis states its n, positives and prevalence; refusals
and degenerate intervals are shown as such, never as numbers.

The page is the Jinja2 template ``study_report.html`` (autoescape on): this module turns the
analysis into a list of blocks (headings, notes, tables, figures) whose texts Jinja2 escapes; only
cells that are :class:`markupsafe.Markup` (an interval, an italic "refused") are inserted as they
are, and those escape the text they hold where they are built.
"""

from __future__ import annotations

import base64
import io
import json
from functools import cache
from pathlib import Path

import matplotlib
from markupsafe import Markup, escape

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend must be chosen first

ARM_COLOURS = {"manual": "tab:blue", "ai_assisted": "tab:orange", "ai_standalone": "tab:green"}
ARM_LABELS = {"manual": "manual", "ai_assisted": "AI-assisted"}


def _png(fig) -> str:  # a matplotlib Figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def fmt_p(p: float | None) -> str:
    """A p-value as printed (HTML, for a :class:`Markup` cell): ``< 0.001`` below 0.001, else 3 decimals;
    n/a for none.
    """
    if p is None or p != p:
        return "n/a"
    return "&lt; 0.001" if p < 0.001 else f"{p:.3f}"


def _fmt(v: object, digits: int = 3) -> str:
    """A table cell's text: Jinja2 escapes it unless it is :class:`Markup`."""
    if v is None:
        return Markup("&ndash;")
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.{digits}f}"
    return v if isinstance(v, Markup) else str(v)


_Raw = Markup  # a cell already in HTML (its variable parts escaped where it is built)


def _ci(lo: float | None, hi: float | None, digits: int = 3) -> Markup:
    if lo is None or hi is None or lo != lo or hi != hi:
        return Markup("n/a")
    return Markup(f"{lo:.{digits}f} to {hi:.{digits}f}")


def _est(estimate: float, lo: float | None, hi: float | None, spec: str = ".3f") -> Markup:
    """An estimate with its interval: ``0.812 (0.751 to 0.873)`` (``spec="+.3f"`` for a difference)."""
    return Markup(f"{estimate:{spec}} ({_ci(lo, hi)})")


def _refused(reason: str) -> Markup:
    """A refused analysis' cell: the reason, escaped, in italics."""
    return Markup(f"<i>refused: {escape(reason)}</i>")


def _table(header: list[str], rows: list[list[object]]) -> dict:
    return {"kind": "table", "header": header, "rows": [[_fmt(c) for c in row] for row in rows]}


def _note(text: str, kind: str = "note") -> dict:
    return {"kind": "note", "text": text, "class": kind}


def _heading(level: int, text: str) -> dict:
    return {"kind": "heading", "level": level, "text": text}


def _image(alt: str, src: str) -> dict:
    return {"kind": "image", "alt": alt, "src": src}


def roc_figure(pathology: str, result: dict) -> str:
    """ROC curves of one pathology: one thin line per reader and arm, the AI alone dashed."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for arm, curves in result["roc"].items():
        for i, curve in enumerate(curves.values()):
            ax.plot(curve["fpr"], curve["tpr"], color=ARM_COLOURS.get(arm, "grey"), lw=1, alpha=0.7,
                    label=ARM_LABELS.get(arm, arm) if i == 0 else None)
    ai = result.get("ai_standalone") or {}
    if ai.get("roc"):
        ax.plot(ai["roc"]["fpr"], ai["roc"]["tpr"], color=ARM_COLOURS["ai_standalone"], lw=2, ls="--",
                label="AI alone")
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=pathology, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def time_figure(per_arm: dict) -> str:
    """Box plot of reading times per arm (whiskers at 1.5 IQR, outliers not drawn)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    stats = [{"label": ARM_LABELS.get(a, a), "med": v["median"], "q1": v["q1"], "q3": v["q3"],
              "whislo": v["whislo"], "whishi": v["whishi"], "fliers": []} for a, v in per_arm.items()]
    ax.bxp(stats, showfliers=False)
    ax.set(ylabel="reading time (s)", title="Reading time per arm")
    return _png(fig)


def _mrmc_rows(analyses: dict, primary: str) -> list[list[object]]:
    rows = []
    for key, m in analyses.items():
        label = (m.get("label") or key) + (" [primary]" if key == primary else "")
        if "refused" in m:
            rows.append([label, _refused(m["refused"])] + [None] * 8)
            continue
        d, man, ai = m["difference"], m["means"]["manual"], m["means"]["ai_assisted"]
        rows.append([label, m["units"], m["positives"], m["prevalence"], m["readers"],
                     _est(man["estimate"], man["ci_low"], man["ci_high"]),
                     _est(ai["estimate"], ai["ci_low"], ai["ci_high"]),
                     _est(d["estimate"], d["ci_low"], d["ci_high"], "+.3f"),
                     _Raw(f"F={m['f']:.2f}, df={m['df1']}, {m['df2']:.1f}"),
                     _Raw(fmt_p(m["p_value"]) + (f" (Holm {fmt_p(m['p_holm'])})" if "p_holm" in m else "")
                          + (f" <b>{escape(m['flag'])}</b>" if m.get("flag") else ""))])
    return rows


MRMC_HEADER = ["analysis", "units", "positives", "prevalence", "readers", "AUC manual (95% CI)",
               "AUC AI-assisted (95% CI)", "AI-assisted - manual (95% CI)", "test", "p"]


def _fixed_rows(analyses: dict) -> list[list[object]]:
    rows = []
    for key, m in analyses.items():
        if "refused" in m:
            continue
        fr, fc = m["fixed_readers"], m["fixed_cases"]
        rows.append([m.get("label") or key, "fixed readers, random cases",
                     _est(fr["difference"]["estimate"], fr["difference"]["ci_low"], fr["difference"]["ci_high"],
                          "+.3f"),
                     _Raw(f"X2={fr['x2']:.2f}, df={fr['df']}"), _Raw(fmt_p(fr["p_value"]))])
        rows.append([m.get("label") or key, "random readers, fixed cases",
                     _est(fc["difference"]["estimate"], fc["difference"]["ci_low"], fc["difference"]["ci_high"],
                          "+.3f"),
                     _Raw(f"F={fc['f']:.2f}, df={fc['df1']}, {fc['df2']}"), _Raw(fmt_p(fc["p_value"]))])
    return rows


def _flow_section(flow: dict) -> list[dict]:
    parts = [_heading(2, "Study flow")]
    rows = [["readers enrolled", flow["readers_enrolled"]],
            ["readers without any read", ", ".join(flow["readers_without_reads"]) or "none"],
            ["cases enrolled", flow["cases_enrolled"]], ["cases read", flow["cases_read"]],
            ["assignments", flow["assignments"]], ["reads submitted", flow["reads_submitted"]],
            ["reads corrected (newest version analysed)", flow["reads_corrected"]]]
    parts.append(_table(["", "n"], rows))
    gaps = [w for w in flow["washout"] if w["gap_days"] is not None]
    if gaps:
        need = flow["washout_days_required"]
        short = [w["reader"] for w in gaps if w["achieved"] is False]
        parts.append(_note(f"Washout: required {need} days; achieved gaps {min(w['gap_days'] for w in gaps):.1f} to "
                           f"{max(w['gap_days'] for w in gaps):.1f} days"
                           + (f"; NOT achieved by {', '.join(short)}." if short else "; achieved by every reader.")))
    arows = []
    for name, a in flow["analysed"].items():
        dropped = "; ".join(f"{d['reader']}: {d['reason']}" for d in a["readers_dropped"]) or "none"
        lost = a["dropped"]
        reasons = "; ".join(f"{k} ({v} cases)" for k, v in list(lost["reasons"].items())[:6]) or "-"
        arows.append([name, len(a["readers"]), dropped, a["units_with_reference"], a["units"], a["cases"],
                      lost["cases_with_dropped_units"], reasons])
    parts.append(_heading(3, "Analysed (complete reader x unit design, both arms)"))
    parts.append(_table(["pathology", "readers analysed", "readers dropped (why)", "units with reference",
                         "units analysed", "cases analysed", "cases with dropped units", "why units were dropped"],
                        arows))
    return parts


def _sens_spec_section(res: dict) -> list[dict]:
    parts = [_heading(3, "Sensitivity and specificity (grade ≥ threshold)")]
    rows = []
    ra = res["sens_spec"]["reader_average"]
    for arm, v in res["sens_spec"]["pooled"].items():
        row = [ARM_LABELS[arm], v["reads"], v["sensitivity"], _ci(*v["sens_ci"]), v["specificity"],
               _ci(*v["spec_ci"])]
        for key in ("sensitivity", "specificity"):
            m = ra.get(key) or {}
            s = (m.get("means") or {}).get(arm)
            row.append(_est(s["estimate"], s["ci_low"], s["ci_high"]) if s else "n/a")
        rows.append(row)
    parts.append(_table(["arm", "reads", "sensitivity (pooled)", "Wilson 95% CI", "specificity (pooled)",
                         "Wilson 95% CI", "sensitivity: reader average (OR-Hillis 95% CI)",
                         "specificity: reader average (OR-Hillis 95% CI)"], rows))
    trows = []
    for key in ("sensitivity", "specificity"):
        m = ra.get(key)
        if not m:
            continue
        if "refused" in m:
            trows.append([key, _refused(m["refused"]), None, None, None])
            continue
        d = m["difference"]
        trows.append([key, m["units"], m["clusters"],
                      _est(d["estimate"], d["ci_low"], d["ci_high"], "+.3f"),
                      _Raw(f"{fmt_p(m['p_value'])} (F={m['f']:.2f}, df={m['df1']}, {m['df2']:.1f})")])
    if trows:
        parts.append(_table(["", "units", "patients", "AI-assisted - manual (95% CI)", "p (OR-Hillis, "
                             "patient-deleted jackknife)"], trows))
    parts.append(_note("The pooled Wilson interval treats every read as independent; the reader-average interval "
                       "accounts for readers and patients as random (and is the one to quote)."))
    return parts


def _agreement_section(res: dict) -> list[dict]:
    ag = res.get("agreement")
    if not ag:
        return []
    rows = []
    for arm, v in ag["arms"].items():
        icc_g, icc_m = v.get("icc_grades"), v.get("icc_measurement")
        rows.append([ARM_LABELS[arm], _est(v["fleiss_kappa"], *v["fleiss_kappa_ci"]),
                     _est(v["alpha_ordinal"], *v["alpha_ordinal_ci"]),
                     _est(icc_g["icc2_1"], icc_g["ci_low"], icc_g["ci_high"]) if icc_g else None,
                     _est(icc_m["icc2_1"], icc_m["ci_low"], icc_m["ci_high"]) if icc_m else None])
    d = ag["difference"]
    rows.append([d["label"], _est(d["fleiss_kappa"], *d["fleiss_kappa_ci"], "+.3f"),
                 _est(d["alpha_ordinal"], *d["alpha_ordinal_ci"], "+.3f"), None, None])
    return [_heading(3, "Agreement between readers (interobserver)"),
            _note(f"{ag['readers']} readers, {ag['units']} units, {ag['cases']} patients; {ag['method']}; "
                  "ICC(2,1) with F-based CI."),
            _table(["arm", "Fleiss kappa (95% CI)", "Krippendorff alpha, ordinal (95% CI)", "ICC(2,1) grades",
                    "ICC(2,1) measurements"], rows)]


def _ai_section(res: dict, opts: dict) -> list[dict]:
    ai = res.get("ai_standalone")
    if not ai:
        return []
    parts = [_heading(3, "AI alone")]
    auc = ai["auc"]
    auc_txt = (_refused(auc["refused"]) if "refused" in auc else
               f"{auc['auc']:.3f} ({_ci(auc['ci_low'], auc['ci_high'])}, {auc['method']})"
               + (f" <b>{escape(auc['flag'])}</b>" if auc.get("flag") else ""))
    parts.append(_table(["units", "positives", "AUC (95% CI)", "sensitivity (Wilson 95% CI)",
                         "specificity (Wilson 95% CI)", "quadratic kappa vs reference"],
                        [[ai["units"], ai["positives"], _Raw(auc_txt),
                          _est(ai["sensitivity"], *ai["sens_ci"]),
                          _est(ai["specificity"], *ai["spec_ci"]), ai["kappa_quadratic"]]]))
    hyp = opts["hypothesis"]
    test = {"difference": "two-sided test of no difference",
            "non_inferiority": f"one-sided non-inferiority test, margin {opts['margin']:.3f} AUC",
            "superiority": f"one-sided superiority test, margin {opts['margin']:.3f} AUC"}[hyp]
    rows = []
    for arm, v in ai["vs_readers"].items():
        if "refused" in v:
            rows.append([ARM_LABELS[arm], _refused(v["refused"]), None, None, None,
                         None])
            continue
        rows.append([ARM_LABELS[arm], v["units"], f"{v['standalone']:.3f} vs {v['reader_mean']:.3f}",
                     _est(v["difference"], v["ci_low"], v["ci_high"], "+.3f"), _Raw(fmt_p(v["p_value"])),
                     _Raw(fmt_p(v.get("p_holm")))])
    parts.append(_note(f"AI alone vs the readers' average AUC of each arm: OR-Hillis single-test analysis of the "
                       f"reader-by-reader differences (readers and patients random, clustered DeLong); {test}; "
                       "Holm-adjusted across the pathologies analysed."))
    parts.append(_table(["readers", "units", "AUC AI alone vs readers", "AI alone - readers (95% CI)", "p",
                         "p (Holm)"], rows))
    return parts


def _pathology_section(name: str, res: dict, opts: dict) -> list[dict]:
    parts = [_heading(2, name)]
    d = res["design"]
    parts.append(_note(f"Positive at grade >= {res['positive_at']}. Complete design: {len(d['readers'])} readers, "
                       f"{d['units']} units (case x level) of {d['clusters']} patients, {d['positives']} positive "
                       f"(prevalence {d['prevalence']:.3f})." if d["units"] else
                       f"Positive at grade >= {res['positive_at']}. No complete design."))
    if any(res["roc"].values()) or (res.get("ai_standalone") or {}).get("roc"):
        parts.append(_image(f"ROC {name}", roc_figure(name, res)))
    auc = res["auc"]
    parts.append(_heading(3, "AUC: Obuchowski-Rockette, Hillis df (random readers and cases)"))
    if "refused" in auc:
        parts.append(_note(auc["refused"], "refused"))
    else:
        parts.append(_table(MRMC_HEADER, _mrmc_rows(auc["analyses"], auc["primary"])))
        parts.append(_heading(4, "Fixed-reader and fixed-case analyses"))
        parts.append(_table(["analysis", "factors", "AI-assisted - manual (95% CI)", "test", "p"],
                            _fixed_rows({k: v for k, v in auc["analyses"].items() if k == auc["primary"]})))
    if res["per_level"]:
        parts.append(_heading(4, "Per lumbar level (patients independent)"))
        parts.append(_table(MRMC_HEADER, _mrmc_rows(res["per_level"], "")))
    parts += _sens_spec_section(res)
    rows = []
    for arm, v in res["reference_agreement"].items():
        rows.append([ARM_LABELS[arm], v["reads"], v["kappa_linear"], v["kappa_quadratic"], v["accuracy"]])
    parts += [_heading(3, "Agreement with the reference standard"),
              _table(["arm", "reads", "weighted kappa, linear", "weighted kappa, quadratic", "exact accuracy"], rows)]
    parts += _agreement_section(res)
    parts += _ai_section(res, opts)
    rows = []
    for arm in ("manual", "ai_assisted"):
        for rdr, v in res["per_reader_auc"].get(arm, {}).items():
            if "refused" in v:
                rows.append([rdr, ARM_LABELS[arm], None, None, None,
                             _refused(v["refused"]), None])
            else:
                rows.append([rdr, ARM_LABELS[arm], v["n_pos"] + v["n_neg"], v["n_pos"], v["auc"],
                             _ci(v["ci_low"], v["ci_high"]),
                             (v["method"] + (f": {v['flag']}" if v.get("flag") else ""))])
    if rows:
        parts += [_heading(3, "AUC per reader (all the reader's units in that arm)"),
                  _table(["reader", "arm", "units", "positives", "AUC", "95% CI", "interval"], rows)]
    prow = []
    for rdr, v in res["paired_delong"].items():
        if "refused" in v:
            prow.append([rdr, _refused(v["refused"]), None, None, None, None])
        else:
            prow.append([rdr, v["units"], v["auc_manual"], v["auc_ai_assisted"],
                         _est(v["diff"], v["ci_low"], v["ci_high"], "+.3f"),
                         _Raw(fmt_p(v["p_value"]) + (f" {escape(v['flag'])}" if v.get("flag") else ""))])
    if prow:
        parts += [_heading(3, "Paired DeLong test per reader"),
                  _table(["reader", "units", "AUC manual", "AUC AI-assisted", "AI-assisted - manual (95% CI)", "p"],
                         prow)]
    if res.get("period"):
        rows = [[ARM_LABELS[arm], s.replace("_", " "), v["mean_reader_auc"], v["readers"]]
                for arm, per in res["period"].items() for s, v in per.items()]
        parts += [_heading(3, "Period (session) effect"), _table(["arm", "period", "mean reader AUC", "readers"], rows)]
    return parts


def _time_section(rt: dict) -> list[dict]:
    if not rt["per_arm"]:
        return []
    parts = [_heading(2, "Reading time"), _image("reading time", time_figure(rt["per_arm"]))]
    parts.append(_table(["arm", "reads", "median (s)", "Q1", "Q3", "geometric mean (s)"],
                        [[ARM_LABELS.get(a, a), v["n"]] + [_Raw(f"{v[k]:.1f}") for k in
                                                           ("median", "q1", "q3", "geometric_mean")]
                         for a, v in rt["per_arm"].items()]))
    m = rt.get("model")
    if m:
        r = m["ratio_ai_vs_manual"]
        rows = [["AI-assisted / manual", r["ratio"], _ci(r["ci_low"], r["ci_high"]), _Raw(fmt_p(r["p_value"]))]]
        if m.get("ratio_period_2_vs_1"):
            p = m["ratio_period_2_vs_1"]
            rows.append(["session 2 / session 1", p["ratio"], _ci(p["ci_low"], p["ci_high"]),
                         _Raw(fmt_p(p["p_value"]))])
        parts.append(_note(f"Linear mixed model: {m['formula']}; {m['reads']} reads, {m['readers']} readers, "
                           f"{m['cases']} cases; variances reader {m['var_reader']:.4f}, case {m['var_case']:.4f}, "
                           f"residual {m['var_residual']:.4f}."))
        parts.append(_table(["time ratio", "estimate", "95% CI", "p"], rows))
    elif rt.get("model_refused"):
        parts.append(_note(rt["model_refused"], "refused"))
    if rt["excluded_reads"]:
        parts.append(_note(f"{rt['excluded_reads']} read(s) without a positive reading time excluded."))
    return parts


@cache
def _template():  # a jinja2.Template
    """``study_report.html`` beside this module, autoescape on, undefined names an error."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("study_report.html")


def render_html(study: str, analysis: dict) -> str:
    """The report as one HTML document."""
    opts = analysis["options"]
    blocks = [_heading(1, f"Reader study {study}"),
              _note(f"{analysis['cases']} cases; readers: {', '.join(analysis['readers'])}. Every difference between "
                    f"arms is {analysis['sign_convention']} (positive: better with AI). 95% intervals; p-values "
                    f"two-sided unless stated. {analysis['multiplicity']['method']} for the primary AUC comparison "
                    "and for the AI-alone comparisons.")]
    blocks += _flow_section(analysis["flow"])
    for name, res in analysis["pathologies"].items():
        blocks += _pathology_section(name, res, opts)
    blocks += _time_section(analysis["reading_time"])
    return _template().render(title=study, blocks=blocks)


def write_report(study: str, analysis: dict, path: Path) -> Path:
    """Write the HTML report to ``path`` and the analysis as JSON next to it (same stem, .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(study, analysis), encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(analysis, indent=1, default=float), encoding="utf-8")
    return path
