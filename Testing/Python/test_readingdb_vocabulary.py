"""One vocabulary of grades: the report, the reading database and the Slicer panel name every grade alike.

The grades come out of the real grading rules (measurements swept over their range), go through
report.html, into a real SQLite reading database as AI results and back, and into the panel's rows.
"""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from LumbarVNetProLib import grades as panel
from lvp import grading, scales
from lvp.measure.types import LevelMeasurements
from lvp.readingdb import AIGrade, ReadingDB
from lvp.readingdb.admin import add_assignment, add_cases, add_readers, create_study
from lvp.readingdb.scales import SCALES as DB_SCALES
from lvp.readingdb.scales import check_grade
from lvp.report.html import render_html

# Each pathology's measurement and the range that walks the rules through all its grades.
SWEEPS = {
    "canal_stenosis": ("dural_sac_area_mm2", np.linspace(10, 200, 60)),
    "lateral_recess_left": ("lateral_recess_depth_left_mm", np.linspace(0.2, 9, 60)),
    "lateral_recess_right": ("lateral_recess_depth_right_mm", np.linspace(0.2, 9, 60)),
    "pfirrmann": ("disc_signal_ratio", np.linspace(0.01, 0.6, 60)),
    "narrowing": ("disc_height_ratio", np.linspace(0.3, 1.5, 30)),
}


def _graded(pathology: str) -> dict[int, str]:
    """Every grade the uncalibrated rules give over the sweep, with the name the grading wrote."""
    name, values = SWEEPS[pathology]
    rules = grading.GradingRules(calibration="")
    seen: dict[int, str] = {}
    for v in values:
        m = LevelMeasurements("L4-L5", 94, np.zeros(3))
        m.add(name, float(v), "mm")
        g = grading.grade_level(m, rules, calibration="")[pathology] if pathology != "narrowing" else \
            grading.grade_narrowing(m, rules, None)
        seen[g.grade] = g.name
    return seen


def _herniation_graded() -> dict[int, str]:
    rules = grading.GradingRules(calibration="")
    seen: dict[int, str] = {}
    for d in np.linspace(0, 12, 25):
        for frac, width in ((0.1, 20.0), (0.9, 20.0), (0.1, 2.0)):
            m = LevelMeasurements("L4-L5", 94, np.zeros(3))
            m.add("posterior_displacement_mm", float(d), "mm")
            m.add("displacement_circumference_fraction", frac, "")
            m.add("herniation_base_width_mm", width, "mm")
            g = grading.grade_herniation(m, rules, None)
            seen[g.grade] = g.name
    return seen


class _Cells(HTMLParser):
    """The text of every cell of the grade table, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "grades") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False

    def handle_data(self, data):
        if self._in_table and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def _column(header: list[str], pathology: str) -> int:
    """The grade table's column of ``pathology``, headed by its key (spaces for ``_``) or its title."""
    names = {pathology.replace("_", " ").lower(), scales.SCALES[pathology].title.lower()}
    return next(i for i, h in enumerate(header) if h.strip().lower() in names)


@pytest.fixture(scope="module")
def graded() -> dict[str, dict[int, str]]:
    out = {p: _graded(p) for p in SWEEPS}
    out["herniation"] = _herniation_graded()
    return out


def test_grading_reaches_every_grade_and_names_it_from_the_one_vocabulary(graded):
    for pathology, seen in graded.items():
        sc = scales.SCALES[pathology]
        # The sweep must reach every grade, or the agreement below would check only part of the scale.
        assert sorted(seen) == list(sc.grades), pathology
        for grade, name in seen.items():
            assert name == sc.name(grade)
    # The disagreement this vocabulary removed: recess grade 0 was "normal" in the report only.
    assert graded["lateral_recess_left"][0] == graded["canal_stenosis"][0] == "none"


def test_report_database_and_panel_agree_on_every_grade_name(graded, tmp_path):
    # The report: one level per grade value, rendered to HTML; read the names back from the table.
    read = scales.READ_PATHOLOGIES
    width = max(len(graded[p]) for p in read)
    levels = []
    for i in range(width):
        grades = {}
        for p in read:
            values = sorted(graded[p])
            g = values[i % len(values)]
            grades[p] = {"grade": g, "name": graded[p][g], "confidence": 0.9,
                         "measurement": SWEEPS.get(p, ("posterior_displacement_mm",))[0], "value": 1.0}
        levels.append({"level": f"L{i}-X", "confidence": 0.9, "grades": grades})
    report = {"status": "complete", "levels": levels, "warnings": [], "input": {}, "model": {}}
    parser = _Cells()
    parser.feed(render_html(report, None))
    header, *rows = parser.rows
    assert len(rows) == width
    html_names = {}
    for row, level in zip(rows, levels):
        for p in read:
            cell = row[_column(header, p)]
            html_names[(level["level"], p)] = cell
            assert cell.startswith(level["grades"][p]["name"]), (p, cell)

    # The database: the same grades stored as AI results and read back by a reader's open AI read.
    db = ReadingDB(f"sqlite:///{tmp_path / 'vocab.sqlite'}")
    try:
        create_study(db, "v")
        add_cases(db, "v", [{"case_key": "c", "image_ref": "c.nii.gz"}])
        add_readers(db, "v", [{"username": "r"}])
        db.store_ai_results("v", "c", [AIGrade(lv["level"], p, g["grade"], g["confidence"])
                                       for lv in levels for p, g in lv["grades"].items()])
        asg = add_assignment(db, "v", "r", "c", "ai_assisted", 1)
        back = db.start_read("r", asg).ai_results
    finally:
        db.close()
    assert len(back) == width * len(read)

    # The panel: rows built from the report, and the names it shows for what the database returned.
    rows_panel = panel.rows_from_report(report)
    assert {(r.level, r.pathology) for r in rows_panel} == set(html_names)
    for row in rows_panel:
        cells = panel.table_cells(row)
        assert html_names[row.key].startswith(cells[2])
    for ai in back:
        expected = next(lv for lv in levels if lv["level"] == ai.level)["grades"][ai.pathology]["name"]
        assert panel.grade_name(ai.pathology, ai.grade) == expected
        assert DB_SCALES[ai.pathology].names[ai.grade - DB_SCALES[ai.pathology].first_grade] == expected
        assert check_grade(ai.pathology, ai.grade) == ai.grade


def test_panel_and_database_offer_exactly_the_scale(graded):
    assert panel.PATHOLOGIES == tuple(DB_SCALES) == scales.READ_PATHOLOGIES
    for p in scales.READ_PATHOLOGIES:
        assert [g for _, g in panel.grade_choices(p)] == list(DB_SCALES[p].grades) == sorted(graded[p])
        names = [label.split(" ", 1)[1] for label, _ in panel.grade_choices(p)]
        assert names == [graded[p][g] for g in sorted(graded[p])]


def test_vocabulary_imports_without_sqlalchemy_or_numpy():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sqlalchemy', 'numpy', 'alembic'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import lvp.scales as s\n"
        "print(s.grade_name('lateral_recess_left', 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


def test_off_scale_grades_are_refused_by_name():
    with pytest.raises(ValueError, match="pfirrmann scale 1-5"):
        scales.grade_name("pfirrmann", 0)
    with pytest.raises(KeyError, match="unknown pathology 'spondylolysis'"):
        scales.scale("spondylolysis")
