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

from lvp.csv_safe import safe_cell
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
        csv.writer(f).writerow(MRMC_FIELDS)
        for code, name in sorted(enumerate(cols["pathologies"]), key=lambda t: t[1]):
            scale = scale_for(name)
            d = complete_design(pathology_grid(cols, code), cols["cases"])
            units = d.kept_units.nonzero()[0]
            truth = (d.truth_grade[units] >= scale.positive_at).astype(int)
            # The unit part of each line once; then one join per reader and arm (900,000 lines in ~1 s).
            unit_txt = [f"{_q(cols['cases'][c])}|{_q(cols['levels'][lv])},{_q(cols['cases'][c])},"
                        f"{_q(cols['levels'][lv])}" for c, lv in zip(d.unit_case[units], d.unit_level[units])]
            for j in d.kept_readers:
                for a, arm in enumerate(ARM_NAMES):
                    head = f"{_q(name)},{_q(d.readers[j])},"
                    g = d.grid[a, j, units]
                    f.write("".join(f"{head}{u},{arm},{t},{s}\r\n" for u, t, s in zip(unit_txt, truth.tolist(),
                                                                                       g.tolist())))
                    n += units.size
    return n


def _q(text: str) -> str:
    """A CSV field: spreadsheet-safe (:func:`safe_cell`), quoted when it holds a comma, quote or line break."""
    text = safe_cell(text)
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
