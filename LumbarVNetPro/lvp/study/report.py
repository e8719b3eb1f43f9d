"""HTML report of a reader study: ROC curves per arm, agreement tables, MRMC result, reading times.

Figures are drawn with matplotlib's Agg backend (no display) and embedded as PNG data URIs, so the
report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

ARM_COLOURS = {"manual": "tab:blue", "ai_assisted": "tab:orange", "ai_standalone": "tab:green"}


def _png(fig) -> str:  # noqa: ANN001 - a matplotlib Figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def roc_figure(pathology: str, result: dict) -> str:
    """ROC curves of one pathology: one thin line per reader and arm, the AI alone dashed."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for arm, curves in result["roc"].items():
        for i, curve in enumerate(curves.values()):
            ax.plot(curve["fpr"], curve["tpr"], color=ARM_COLOURS.get(arm, "grey"),
                    lw=2 if arm == "ai_standalone" else 1, ls="--" if arm == "ai_standalone" else "-",
                    alpha=0.8, label=arm if i == 0 else None)
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=pathology, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def time_figure(times: dict) -> str:
    """Box plot of reading times per arm."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    arms = list(times)
    ax.boxplot([times[a]["values"] for a in arms])
    ax.set_xticks(range(1, len(arms) + 1), arms)
    ax.set(ylabel="reading time (s)", title="Reading time per arm")
    return _png(fig)


def render_html(study: str, analysis: dict) -> str:
    """The report as one HTML document."""
    parts = [f"<h1>Reader study {html.escape(study)}</h1>",
             f"<p>{analysis['cases']} cases, readers: {html.escape(', '.join(analysis['readers']))}.</p>"]
    for name, res in analysis["pathologies"].items():
        parts.append(f"<h2>{html.escape(name)}</h2><p>{res['units']} units (case x level) with a reference; "
                     f"positive at grade &ge; {res['positive_at']}.</p>")
        if res["roc"]:
            parts.append(f'<img alt="ROC {html.escape(name)}" src="{roc_figure(name, res)}">')
        rows = []
        for arm, a in res["arms"].items():
            mean_auc = res["mrmc"]["single"][arm] if res["mrmc"] else None
            rows.append([arm, a["reads"], mean_auc["estimate"] if mean_auc else None,
                         f"{mean_auc['ci_low']:.3f}-{mean_auc['ci_high']:.3f}" if mean_auc else None,
                         a["sensitivity"], a["specificity"], a["kappa_linear"], a["kappa_quadratic"],
                         a["accuracy"], a["fleiss_kappa"],
                         a["icc_measurement"]["icc2_1"] if a["icc_measurement"] else None])
        if res["ai_standalone"]:
            s = res["ai_standalone"]
            rows.append(["AI alone", s["n_pos"] + s["n_neg"], s["auc"], f"{s['ci_low']:.3f}-{s['ci_high']:.3f}",
                         s["sensitivity"], s["specificity"], None, s["kappa_quadratic"], None, None, None])
        parts.append(_table(["arm", "reads", "AUC (mean of readers)", "95% CI", "sensitivity", "specificity",
                             "kappa linear", "kappa quadratic", "accuracy", "Fleiss kappa", "ICC(2,1)"], rows))
        per_reader = []
        for arm, a in res["arms"].items():
            for rdr, v in a["per_reader_auc"].items():
                per_reader.append([rdr, arm, v["auc"], f"{v['ci_low']:.3f}-{v['ci_high']:.3f}"])
        if per_reader:
            parts.append("<h3>AUC per reader (DeLong 95% CI)</h3>")
            parts.append(_table(["reader", "arm", "AUC", "95% CI"], per_reader))
        if res["paired_delong"]:
            parts.append("<h3>Paired DeLong test, AI-assisted vs manual, per reader</h3>")
            parts.append(_table(["reader", "AUC AI-assisted", "AUC manual", "difference", "p"],
                                [[r, v["auc_ai_assisted"], v["auc_manual"], v["diff"], v["p_value"]]
                                 for r, v in res["paired_delong"].items()]))
        if res["mrmc"]:
            m, d = res["mrmc"], res["mrmc"]["difference"]
            parts.append("<h3>MRMC: Obuchowski-Rockette, Hillis df (random readers and cases)</h3>")
            parts.append(_table(["comparison", "difference", "95% CI", "F", "df1", "df2", "p"],
                                [[d["comparison"], d["estimate"], f"{d['ci_low']:.3f} to {d['ci_high']:.3f}",
                                  m["f"], m["df1"], m["df2"], m["p_value"]]]))
        lvl_rows = [[arm, lvl, v["accuracy"], v["n"]] for arm, a in res["arms"].items()
                    for lvl, v in a["accuracy_per_level"].items()]
        if lvl_rows:
            parts.append("<h3>Accuracy per level</h3>" + _table(["arm", "level", "accuracy", "n"], lvl_rows))
    times = analysis["reading_time"]
    if times:
        parts.append("<h2>Reading time</h2>")
        parts.append(f'<img alt="reading time" src="{time_figure(times)}">')
        parts.append(_table(["arm", "reads", "mean (s)", "median (s)", "Q1", "Q3"],
                            [[a, v["n"], v["mean"], v["median"], v["q1"], v["q3"]] for a, v in times.items()]))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(study)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(study: str, analysis: dict, path: Path) -> Path:
    """Write the HTML report to ``path`` and the analysis as JSON next to it (same stem, .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(study, analysis), encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(analysis, indent=1, default=float), encoding="utf-8")
    return path
