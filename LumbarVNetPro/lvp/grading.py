"""Grades per disc level from its measurements, by documented, configurable rules.

Every grade carries ``probabilities`` over its scale. They are **soft scores, not calibrated
probabilities**: an ordinal logistic in the distance of the measurement from each threshold,
``P(grade >= k) = 1 / (1 + exp(-(distance to threshold k) / scale))``, so a value far from every
threshold gives a confident grade and one on a threshold gives 50/50. The scales are set a
priori to about one voxel (0.5-1 mm, 8 mm² of area). ``confidence`` is the probability of the
chosen grade.

Rules and sources (all thresholds live in :class:`GradingRules`; override them from YAML with
:meth:`GradingRules.from_yaml`):

* **Herniation** (Fardon et al., Spine J 2014, "Lumbar disc nomenclature: version 2.0"):
  displacement < ``displaced_mm`` → none; displaced material over > 25 % of the circumference
  (``broad_fraction``) and < 3 mm (``bulge_max_mm``) → bulge; focal (or broad but ≥ 3 mm) →
  protrusion when its displacement is smaller than its base width, extrusion when larger.
* **Central canal stenosis**: dural sac cross-sectional area < 100 mm² relative, < 76 mm²
  absolute stenosis (Schönström et al., Spine 1985; Hamanishi et al., Spine 1994); < 50 mm²
  severe (LVP's choice, in line with grading by Schizas et al., Spine 2010 where CSF is
  obliterated). Without an area (thin slab), the AP diameter: < 12 mm relative, < 10 mm
  absolute (Verbiest; Ullrich et al., Radiology 1980), < 8 mm severe (LVP's choice).
* **Lateral recess stenosis** (Bartynski & Lin, AJNR 2003: a recess depth ≤ 3 mm is
  stenotic, ≥ 5 mm normal): depth > 5 mm → 0, 3–5 → 1, 2–3 → 2, < 2 → 3 (cut-points other
  than 3 mm are LVP's mapping). Left/right follow the image's patient axes, which the shared
  data sets do not record reliably.
* **Pfirrmann** (Pfirrmann et al., Spine 2001) from the disc/CSF T2 signal ratio (nucleus
  signal, grade I bright as CSF → V dark) with thresholds set on SPIDER (see
  docs/validation.md), and grade V also when the disc is collapsed (height ratio < 0.5).
* **Narrowing**: mean disc height below ``narrowing_ratio`` (0.75) of the median of the
  patient's other discs (a within-patient rule; LVP's choice, no single literature cut-off).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml

from lvp.errors import ConfigError
from lvp.measure.types import LevelMeasurements

PATHOLOGIES = ("herniation", "canal_stenosis", "lateral_recess_left", "lateral_recess_right", "pfirrmann", "narrowing")
HERNIATION_NAMES = ("none", "bulge", "protrusion", "extrusion")
STENOSIS_NAMES = ("none", "mild", "moderate", "severe")
RECESS_NAMES = ("normal", "mild", "moderate", "severe")
PFIRRMANN_NAMES = ("I", "II", "III", "IV", "V")
NARROWING_NAMES = ("no narrowing", "narrowing")


@dataclass
class GradingRules:
    """Thresholds of every rule (see the module docstring for their sources)."""

    displaced_mm: float = 1.0
    bulge_max_mm: float = 3.0
    broad_fraction: float = 0.25
    displacement_scale_mm: float = 0.5
    fraction_scale: float = 0.04
    canal_area_mm2: tuple[float, float, float] = (100.0, 76.0, 50.0)  # mild, moderate, severe below
    canal_area_scale_mm2: float = 8.0
    canal_ap_mm: tuple[float, float, float] = (12.0, 10.0, 8.0)
    canal_ap_scale_mm: float = 0.5
    recess_depth_mm: tuple[float, float, float] = (5.0, 3.0, 2.0)  # grade 1, 2, 3 below
    recess_scale_mm: float = 0.4
    pfirrmann_signal: tuple[float, float, float, float] = (0.30, 0.18, 0.115, 0.085)  # II, III, IV, V below
    pfirrmann_scale: float = 0.02
    collapse_ratio: float = 0.5
    narrowing_ratio: float = 0.75
    narrowing_scale: float = 0.05
    sources: dict[str, str] = field(
        default_factory=lambda: {
            "herniation": "Fardon et al., Spine J 2014 (nomenclature 2.0)",
            "canal_stenosis": "Schonstrom et al. Spine 1985; Hamanishi et al. Spine 1994; Ullrich et al. 1980",
            "lateral_recess": "Bartynski & Lin, AJNR 2003",
            "pfirrmann": "Pfirrmann et al., Spine 2001; signal thresholds set on SPIDER",
            "narrowing": "LVP within-patient rule",
        }
    )

    @classmethod
    def from_yaml(cls, path: str | Path) -> GradingRules:
        """Rules with the values of a YAML mapping overriding the defaults."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read grading rules {path}: {err}") from None
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown grading rule(s) in {path}: {', '.join(sorted(unknown))}")
        base = asdict(cls())
        for k, v in data.items():
            base[k] = tuple(v) if isinstance(base[k], tuple) else v
        return cls(**base)


@dataclass
class Grade:
    """One grade with its soft scores and the measurement and rule behind it."""

    grade: int | None
    name: str
    probabilities: list[float]
    confidence: float
    measurement: str
    value: float | None
    rule: str

    def to_dict(self) -> dict:
        """The report.json 1.0 grade object."""
        return {
            "grade": self.grade,
            "name": self.name,
            "probabilities": [round(float(p), 4) for p in self.probabilities],
            "confidence": round(float(self.confidence), 4),
            "measurement": self.measurement,
            "value": None if self.value is None else round(float(self.value), 3),
            "rule": self.rule,
        }


def _sig(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(x, -50, 50))))


def ordinal_probabilities(
    value: float, thresholds: tuple[float, ...], scale: float, decreasing: bool = True
) -> list[float]:
    """Soft ordinal scores: grade k+1 when ``value`` is below threshold k (``decreasing``)."""
    sign = 1.0 if decreasing else -1.0
    at_least = [1.0] + [_sig(sign * (t - value) / scale) for t in thresholds] + [0.0]
    # Enforce monotone cumulative scores (thresholds are ordered, the logistic nearly so).
    for k in range(2, len(at_least) - 1):
        at_least[k] = min(at_least[k], at_least[k - 1])
    return [max(at_least[k] - at_least[k + 1], 0.0) for k in range(len(at_least) - 1)]


def _grade(
    probs: list[float], names: tuple[str, ...], measurement: str, value: float, rule: str, first: int = 0
) -> Grade:
    k = int(np.argmax(probs))
    return Grade(k + first, names[k], probs, probs[k], measurement, value, rule)


def _not_assessable(measurement: str, why: str) -> Grade:
    return Grade(None, "not assessable", [], 0.0, measurement, None, why)


def grade_herniation(m: LevelMeasurements, r: GradingRules) -> Grade:
    """Fardon 2014: none / bulge / protrusion / extrusion."""
    d = m.value("posterior_displacement_mm")
    if d is None:
        return _not_assessable("posterior_displacement_mm", "no body margins beside the disc")
    w = m.value("herniation_base_width_mm") or 0.0
    frac = m.value("displacement_circumference_fraction") or 0.0
    p_disp = _sig((d - r.displaced_mm) / r.displacement_scale_mm)
    p_broad = _sig((frac - r.broad_fraction) / r.fraction_scale)
    p_big = _sig((d - r.bulge_max_mm) / r.displacement_scale_mm)
    p_ext = _sig((d - w) / r.displacement_scale_mm) if w > 0 else 0.0
    bulge = p_disp * p_broad * (1 - p_big)
    focal = p_disp - bulge
    probs = [1 - p_disp, bulge, focal * (1 - p_ext), focal * p_ext]
    rule = (
        f"Fardon 2014: displacement < {r.displaced_mm} mm none; > {r.broad_fraction:.0%} of circumference and "
        f"< {r.bulge_max_mm} mm bulge; otherwise protrusion if displacement < base width ({w:.1f} mm), "
        "else extrusion"
    )
    return _grade(probs, HERNIATION_NAMES, "posterior_displacement_mm", d, rule)


def grade_canal(m: LevelMeasurements, r: GradingRules) -> Grade:
    """Central canal stenosis from the dural sac area (or the AP diameter without an area)."""
    area = m.value("dural_sac_area_mm2")
    if area is not None:
        probs = ordinal_probabilities(area, r.canal_area_mm2, r.canal_area_scale_mm2)
        t = r.canal_area_mm2
        rule = f"dural sac area < {t[0]:.0f} / {t[1]:.0f} / {t[2]:.0f} mm2 (Schonstrom 1985, Hamanishi 1994)"
        return _grade(probs, STENOSIS_NAMES, "dural_sac_area_mm2", area, rule)
    ap = m.value("canal_ap_diameter_mm")
    if ap is None:
        return _not_assessable("dural_sac_area_mm2", "canal not measured at this level")
    probs = ordinal_probabilities(ap, r.canal_ap_mm, r.canal_ap_scale_mm)
    t = r.canal_ap_mm
    rule = f"canal AP diameter < {t[0]:.0f} / {t[1]:.0f} / {t[2]:.0f} mm (Verbiest; Ullrich 1980); area not measurable"
    return _grade(probs, STENOSIS_NAMES, "canal_ap_diameter_mm", ap, rule)


def grade_recess(m: LevelMeasurements, r: GradingRules, side: str) -> Grade:
    """Bartynski-style 0-3 from the lateral recess depth."""
    name = f"lateral_recess_depth_{side}_mm"
    depth = m.value(name)
    if depth is None:
        return _not_assessable(name, "lateral recess not measurable (canal cut by the field of view?)")
    probs = ordinal_probabilities(depth, r.recess_depth_mm, r.recess_scale_mm)
    t = r.recess_depth_mm
    rule = (
        f"recess depth > {t[0]} mm 0, {t[1]}-{t[0]} mm 1, {t[2]}-{t[1]} mm 2, < {t[2]} mm 3 "
        "(Bartynski & Lin 2003: <= 3 mm stenotic)"
    )
    return _grade(probs, RECESS_NAMES, name, depth, rule)


def grade_pfirrmann(m: LevelMeasurements, r: GradingRules) -> Grade:
    """Pfirrmann I-V from the disc/CSF signal ratio; V also for a collapsed disc."""
    ratio = m.value("disc_signal_ratio")
    if ratio is None:
        return _not_assessable("disc_signal_ratio", "disc or CSF signal not measurable")
    probs = ordinal_probabilities(ratio, r.pfirrmann_signal, r.pfirrmann_scale)
    height = m.value("disc_height_ratio")
    collapse = "" if height is None else f"; height ratio {height:.2f} < {r.collapse_ratio} gives V"
    if height is not None:
        p_collapse = _sig((r.collapse_ratio - height) / r.narrowing_scale)
        probs = [p * (1 - p_collapse) for p in probs[:4]] + [probs[4] + p_collapse * (1 - probs[4])]
    t = r.pfirrmann_signal
    rule = f"disc/CSF T2 signal ratio >= {t[0]} I, >= {t[1]} II, >= {t[2]} III, >= {t[3]} IV, else V{collapse}"
    return _grade(probs, PFIRRMANN_NAMES, "disc_signal_ratio", ratio, rule, first=1)


def grade_narrowing(m: LevelMeasurements, r: GradingRules) -> Grade:
    """Disc narrowing: mean height below a fraction of the patient's other discs."""
    ratio = m.value("disc_height_ratio")
    if ratio is None:
        return _not_assessable("disc_height_ratio", "fewer than three discs measured in this patient")
    p = _sig((r.narrowing_ratio - ratio) / r.narrowing_scale)
    rule = f"mean disc height < {r.narrowing_ratio} x median of the patient's other discs"
    return _grade([1 - p, p], NARROWING_NAMES, "disc_height_ratio", ratio, rule)


def grade_level(measurements: LevelMeasurements, rules: GradingRules | None = None) -> dict[str, Grade]:
    """All grades of one level: herniation, canal_stenosis, lateral_recess_left/right, pfirrmann, narrowing."""
    r = rules or GradingRules()
    return {
        "herniation": grade_herniation(measurements, r),
        "canal_stenosis": grade_canal(measurements, r),
        "lateral_recess_left": grade_recess(measurements, r, "left"),
        "lateral_recess_right": grade_recess(measurements, r, "right"),
        "pfirrmann": grade_pfirrmann(measurements, r),
        "narrowing": grade_narrowing(measurements, r),
    }
