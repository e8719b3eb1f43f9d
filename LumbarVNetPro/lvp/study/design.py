"""The complete reader x case design an MRMC analysis can use, and the study flow (CONSORT-style).

Obuchowski-Rockette with DeLong covariances needs a factorial design: every analysed reader read
every analysed unit (case x level) in both arms. Missing reads are resolved by dropping, never
silently: first readers who read only one arm (or none), then, greedily, any reader whose gaps cost
more units than the reader is worth (the product readers x units grows when the reader goes), then
the units some remaining reader did not read. Every dropped reader and case is listed with its reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from lvp.study.table import ARM_NAMES


@dataclass
class Design:
    """Grades of one pathology on a (arm, reader, unit) grid, and the complete part of it."""

    grid: np.ndarray  # (2, readers, units) grade, -1 = not read
    truth_grade: np.ndarray  # (units,) reference grade
    ai: np.ndarray  # (units,) AI grade, -1 = none
    unit_case: np.ndarray  # (units,) case code (the patient: cluster of levels)
    unit_level: np.ndarray  # (units,) level code
    readers: list[str]  # names of grid rows
    measurement: np.ndarray = field(default=None)  # (2, readers, units) measurement, NaN = none
    kept_readers: np.ndarray = field(default=None)  # indices into readers
    kept_units: np.ndarray = field(default=None)  # boolean (units,)
    dropped_readers: list[dict] = field(default_factory=list)
    dropped_cases: dict = field(default_factory=dict)

    def complete(self) -> np.ndarray:
        """(2, kept readers, kept units) grades of the complete design."""
        return self.grid[:, self.kept_readers][:, :, self.kept_units]


def pathology_grid(cols: dict, pathology: int) -> Design:
    """Arrange one pathology's grades (with a reference grade) on the (arm, reader, unit) grid."""
    g = cols["grades"]
    m = (g["pathology"] == pathology) & (g["ref"] >= 0)
    n_levels = max(len(cols["levels"]), 1)
    unit_key = g["case"][m].astype(np.int64) * n_levels + g["level"][m]
    keys, unit = np.unique(unit_key, return_inverse=True)
    n_r = len(cols["readers"])
    grid = np.full((2, n_r, keys.size), -1, dtype=np.int16)
    grid[g["arm"][m], g["reader"][m], unit] = g["grade"][m]
    truth = np.full(keys.size, -1, dtype=np.int16)
    truth[unit] = g["ref"][m]
    ai = np.full(keys.size, -1, dtype=np.int16)
    ai[unit] = g["ai"][m]
    meas = np.full(grid.shape, np.nan)
    meas[g["arm"][m], g["reader"][m], unit] = g["measurement"][m]
    return Design(grid, truth, ai, (keys // n_levels).astype(np.int32), (keys % n_levels).astype(np.int32),
                  list(cols["readers"]), meas)


def complete_design(d: Design, case_names: list[str], min_readers: int = 2) -> Design:
    """Choose the complete (reader x unit, both arms) design; record dropped readers and cases."""
    present = d.grid >= 0
    keep = []
    for j, name in enumerate(d.readers):
        arms = [ARM_NAMES[a] for a in range(2) if present[a, j].any()]
        if len(arms) == 2:
            keep.append(j)
        elif arms:
            d.dropped_readers.append({"reader": name, "reason": f"read only the {arms[0]} arm"})
    # (it is not a drop when a reader has no reads of this pathology at all: listed in the flow instead)

    def n_complete(readers: list[int]) -> int:
        return int(present[:, readers].all(axis=(0, 1)).sum()) if readers else 0

    while len(keep) > min_readers:
        base = len(keep) * n_complete(keep)
        trials = [(len(keep) - 1) * n_complete([k for k in keep if k != j]) for j in keep]
        best = int(np.argmax(trials))
        if trials[best] <= base:
            break
        j = keep[best]
        missing = int((~present[:, j]).any(axis=0).sum())
        d.dropped_readers.append({
            "reader": d.readers[j],
            "reason": f"did not read {missing} of the {present.shape[2]} units in both arms; keeping the "
                      f"reader would cost {n_complete([k for k in keep if k != j]) - n_complete(keep)} units",
        })
        keep.remove(j)
    d.kept_readers = np.array(keep, dtype=int)
    d.kept_units = present[:, keep].all(axis=(0, 1)) if keep else np.zeros(present.shape[2], bool)
    lost = ~d.kept_units
    why: Counter = Counter()
    for j in keep:
        for a in range(2):
            miss = lost & ~present[a, j]
            if miss.any():
                why[f"{d.readers[j]}: no {ARM_NAMES[a]} read"] += int(np.unique(d.unit_case[miss]).size)
    lost_cases = np.unique(d.unit_case[lost])
    fully_lost = np.setdiff1d(lost_cases, np.unique(d.unit_case[d.kept_units]))
    d.dropped_cases = {
        "units": int(lost.sum()), "cases_with_dropped_units": int(lost_cases.size),
        "cases_dropped_entirely": int(fully_lost.size),
        "examples": [case_names[c] for c in lost_cases[:20]],
        "reasons": dict(why.most_common()),
    }
    return d


def washout(cols: dict) -> list[dict]:
    """Per reader: days between the last original read of session 1 and the first of session 2."""
    r = cols["reads"]
    out = []
    for j, name in enumerate(cols["readers"]):
        s1 = (r["reader"] == j) & (r["session"] == 1)
        s2 = (r["reader"] == j) & (r["session"] == 2)
        if not s1.any() or not s2.any():
            out.append({"reader": name, "gap_days": None, "achieved": None})
            continue
        end1 = r["submitted_at"][s1].max()
        start2 = r["started_at"][s2].min()
        if np.isnat(end1) or np.isnat(start2):
            out.append({"reader": name, "gap_days": None, "achieved": None})
            continue
        gap = float((start2 - end1) / np.timedelta64(1, "D"))
        achieved = None if cols.get("washout_days") is None else gap >= cols["washout_days"]
        out.append({"reader": name, "gap_days": gap, "achieved": achieved})
    return out


def study_flow(cols: dict, designs: dict[str, Design]) -> dict:
    """CONSORT-style flow: enrolled -> assigned -> read -> analysed, per pathology, with washout."""
    r = cols["reads"]
    info = cols.get("design") or {}
    readers_read = {cols["readers"][j] for j in np.unique(r["reader"])}
    enrolled = info.get("enrolled_readers") or sorted(readers_read)
    per_reader = {}
    for j, name in enumerate(cols["readers"]):
        mine = r["reader"] == j
        per_reader[name] = {ARM_NAMES[a]: int((mine & (r["arm"] == a)).sum()) for a in range(2)}
    assigned: dict[str, int] = Counter()
    for a in info.get("assignments", []):
        assigned[a["reader"]] += a["n"]
    flow = {
        "readers_enrolled": len(enrolled),
        "readers_without_reads": sorted(set(enrolled) - readers_read),
        "cases_enrolled": info.get("enrolled_cases", len(cols["cases"])),
        "cases_read": int(np.unique(r["case"]).size),
        "assignments": int(sum(assigned.values())) if assigned else None,
        "reads_submitted": int(r["reader"].size),
        "reads_corrected": int(r["corrected"].sum()),
        "reads_per_reader": per_reader,
        "washout_days_required": cols.get("washout_days"),
        "washout": washout(cols),
        "analysed": {},
    }
    for name, d in designs.items():
        flow["analysed"][name] = {
            "readers": [d.readers[j] for j in d.kept_readers], "readers_dropped": d.dropped_readers,
            "units": int(d.kept_units.sum()), "units_with_reference": int(d.kept_units.size),
            "cases": int(np.unique(d.unit_case[d.kept_units]).size), "dropped": d.dropped_cases,
        }
    return flow
