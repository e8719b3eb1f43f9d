"""One vocabulary of grades: the report, the reading database and the Slicer panel name every grade alike.

The names the real grading writes (measurements swept over their range) must be the vocabulary's;
then every grade of every scale, named as the grading names it, goes through report.html, into a
real SQLite reading database as AI results and back, and into the panel's rows.
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

# The names the grading writes into report.json, scale by scale (grading.py's own tables).
GRADING_NAMES = {
    "herniation": grading.HERNIATION_NAMES,
    "canal_stenosis": grading.STENOSIS_NAMES,
    "lateral_recess_left": grading.RECESS_NAMES,
    "lateral_recess_right": grading.RECESS_NAMES,
    "pfirrmann": grading.PFIRRMANN_NAMES,
    "narrowing": grading.NARROWING_NAMES,
}
# Measurements swept through their range; the real grading turns them into grades.
SWEEPS = {
    "dural_sac_area_mm2": np.linspace(10, 200, 40),
    "canal_ap_diameter_mm": np.linspace(3, 20, 30),
    "lateral_recess_depth_left_mm": np.linspace(0.2, 9, 30),
    "lateral_recess_depth_right_mm": np.linspace(0.2, 9, 30),
    "disc_signal_ratio": np.linspace(0.01, 0.6, 40),
    "disc_height_ratio": np.linspace(0.3, 1.5, 30),
    "posterior_displacement_mm": np.linspace(0, 12, 30),
}


def _report_name(pathology: str, grade: int) -> str:
    """The name report.json gives ``grade`` of ``pathology`` (what grading.py writes)."""
    return GRADING_NAMES[pathology][grade - scales.SCALES[pathology].first_grade]


def _graded() -> dict[str, dict[int, str]]:
    """Every (grade, name) the real grading writes over the sweeps, calibrated and rule-based."""
    seen: dict[str, dict[int, str]] = {}
    for calibration in ("", None):
        for name, values in SWEEPS.items():
            for v in values:
                m = LevelMeasurements("L4-L5", 94, np.zeros(3))
                m.add(name, float(v), "mm")
                m.add("disc_height_middle_mm", 8.0, "mm")
                m.add("herniation_base_width_mm", 6.0, "mm")
                for pathology, g in grading.grade_level(m, calibration=calibration).items():
                    if g.grade is not None:
                        seen.setdefault(pathology, {})[g.grade] = g.name
    return seen


class _Cells(HTMLParser):
    """The text of every cell of the grade table, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = False
        self._fixed = False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "grades") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            # A column heading may be abbreviated on screen with the full title on hover: read that.
            title = dict(attrs).get("title") if tag == "th" else None
            self.rows[-1].append(title or "")
            self._fixed = bool(title)

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False

    def handle_data(self, data):
        if self._in_table and self.rows and self.rows[-1] and not self._fixed:
            self.rows[-1][-1] += data


def _column(header: list[str], pathology: str) -> int:
    """The grade table's column of ``pathology``, headed by its key (spaces for ``_``) or its title."""
    names = {pathology.replace("_", " ").lower(), scales.SCALES[pathology].title.lower()}
    return next(i for i, h in enumerate(header) if h.strip().lower() in names)


@pytest.fixture(scope="module")
def graded() -> dict[str, dict[int, str]]:
    return _graded()


def test_grading_names_its_grades_from_the_one_vocabulary(graded):
    for pathology, names in GRADING_NAMES.items():
        assert names == scales.SCALES[pathology].names, pathology
    # What the real grading wrote: every name is the vocabulary's, and the sweep graded enough
    # to mean something (several grades of several scales).
    for pathology, seen in graded.items():
        for grade, name in seen.items():
            assert name == scales.SCALES[pathology].name(grade), (pathology, grade, name)
    assert sum(len(seen) >= 2 for seen in graded.values()) >= 2, graded
    # The disagreement this vocabulary removed: recess grade 0 was "normal" in the report only.
    assert _report_name("lateral_recess_left", 0) == _report_name("canal_stenosis", 0) == "none"


def test_report_database_and_panel_agree_on_every_grade_name(tmp_path):
    # The report: one level per grade value, rendered to HTML; read the names back from the table.
    read = scales.READ_PATHOLOGIES
    width = max(len(scales.SCALES[p].grades) for p in read)
    levels = []
    for i in range(width):
        grades = {}
        for p in read:
            values = scales.SCALES[p].grades
            g = values[i % len(values)]
            grades[p] = {"grade": g, "name": _report_name(p, g), "confidence": 0.9,
                         "measurement": "value_mm", "value": 1.0}
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


def test_panel_and_database_offer_exactly_the_scale():
    assert panel.PATHOLOGIES == tuple(DB_SCALES) == scales.READ_PATHOLOGIES
    for p in scales.READ_PATHOLOGIES:
        assert [g for _, g in panel.grade_choices(p)] == list(DB_SCALES[p].grades)
        names = [label.split(" ", 1)[1] for label, _ in panel.grade_choices(p)]
        assert names == [_report_name(p, g) for g in DB_SCALES[p].grades]


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
