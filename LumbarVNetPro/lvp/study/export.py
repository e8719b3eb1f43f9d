"""Long-format export of the analysed design for MRMCaov / RJafroc (R).

One row per reader x unit x arm of each pathology's complete design (the units the report's MRMC
analysed): ``pathology, reader, case, patient, level, arm, truth, score``. ``case`` is the unit
(``patient|level``), ``truth`` 1 when the reference grade is at or above the clinical threshold,
``score`` the reader's ordinal grade. docs/reading-study.md gives the R calls that reproduce the
report's levels-independent and per-patient AUC analyses from this file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lvp.readingdb.scales import scale_for
from lvp.study.design import complete_design, pathology_grid
from lvp.study.table import ARM_NAMES

MRMC_FIELDS = ["pathology", "reader", "case", "patient", "level", "arm", "truth", "score"]


def write_mrmc_csv(cols: dict, path: Path) -> int:
    """Write the long CSV of every pathology's complete design to ``path``; returns the rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(MRMC_FIELDS)
        for code, name in sorted(enumerate(cols["pathologies"]), key=lambda t: t[1]):
            scale = scale_for(name)
            d = complete_design(pathology_grid(cols, code), cols["cases"])
            units = d.kept_units.nonzero()[0]
            patients = [cols["cases"][c] for c in d.unit_case[units]]
            levels = [cols["levels"][lv] for lv in d.unit_level[units]]
            truth = (d.truth_grade[units] >= scale.positive_at).astype(int)
            for j in d.kept_readers:
                for a, arm in enumerate(ARM_NAMES):
                    g = d.grid[a, j, units]
                    w.writerows([name, d.readers[j], f"{p}|{lv}", p, lv, arm, int(t), int(s)]
                                for p, lv, t, s in zip(patients, levels, truth, g))
                    n += units.size
    return n
