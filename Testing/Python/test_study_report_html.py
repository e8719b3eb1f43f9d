"""The reader-study report through its Jinja2 template (issue 12 item 6): every text escaped."""

from __future__ import annotations

import html

from test_study_design import _rows

from lvp.study.analysis import analyse
from lvp.study.report import render_html


def test_study_name_and_reader_names_are_escaped_and_the_tables_are_whole():
    evil = "<script>alert(1)</script>"
    rows = [dict(r, reader=r["reader"] + evil) for r in _rows(n_cases=20)]
    page = render_html(evil, analyse(rows, bootstrap=50))
    assert "<script>" not in page and "&lt;script&gt;" in page
    text = html.unescape(page)
    assert f"<title>{evil}</title>" in text and f"Reader study {evil}" in text
    assert "r1" + evil in text  # the reader names reach the page, as text
    assert page.count("<table>") == page.count("</table>") >= 5
    assert "&amp;lt;" not in page
