"""Grades per disc level from its measurements, by documented, configurable rules.

Two kinds of rule, and every grade's ``rule`` text says which one produced it:

* **SPIDER-calibrated models** for the grades that have real radiologists' grades (herniation /
  bulging → the herniation grade, narrowing, Pfirrmann): small logistic (or proportional-odds)
  models on one to three named measurements, fitted on the SPIDER per-disc grades and shipped
  with their data, date and cross-validated figures in ``lvp/grading_calibration.json``
  (refit with ``lvp validate grades --data DIR --write-calibration FILE``). Their
  ``probabilities`` are calibrated on that data (reference masks, 3 T T2 SPACE slabs); on other
  scanners and on predicted segmentations they are estimates, not guarantees.
* **Literature rules** where no real grades exist (canal stenosis, lateral recesses, and the
  protrusion / extrusion split of a herniation). Their ``probabilities`` are **soft scores, not
  calibrated probabilities**: an ordinal logistic in the distance of the measurement from each
  threshold, ``P(grade >= k) = 1 / (1 + exp(-(distance to threshold k) / scale))``, so a value far
  from every threshold gives a confident grade and one on a threshold gives 50/50, with scales
  set a priori to about one voxel (0.5-1 mm, 8 mm² of area).

``confidence`` is the probability of the chosen (most probable) grade. A grade whose model needs
a measurement that is missing is **not assessable** (``grade`` null, empty probabilities): it is
never guessed from the remaining measurements.

Calibrated models (see docs/validation.md for their out-of-fold figures):

* **Herniation grade** (0 none / 1 bulge / 2 protrusion / 3 extrusion):
  ``P(herniation) = P(>= protrusion)`` from posterior displacement and canal AP diameter
  (SPIDER "disc herniation"); ``P(>= bulge) = max(P(herniation), P(bulging))`` with
  ``P(bulging)`` from the log disc/CSF signal ratio and the posterior displacement (SPIDER "disc
  bulging": it follows degeneration more than displacement on these thin slabs); protrusion vs
  extrusion by Fardon et al., Spine J 2014 (displacement smaller / larger than the base width).
* **Narrowing**: logistic on the mid-disc height relative to the SPIDER median of that level
  (``height_vs_level``) and the log signal ratio.
* **Pfirrmann** I-V: proportional-odds model on the log signal ratio and ``height_vs_level``.

Literature rules (all thresholds live in :class:`GradingRules`; override them from YAML with
:meth:`GradingRules.from_yaml`; ``calibration: ""`` there switches the calibrated models off and
restores the literature / a-priori rules below for every grade):

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
* **Pfirrmann** (uncalibrated fallback) from the disc/CSF T2 signal ratio with thresholds set
  on SPIDER by eye, and grade V also when the disc is collapsed (height ratio < 0.5).
* **Narrowing** (uncalibrated fallback): mean disc height below ``narrowing_ratio`` (0.75) of
  the median of the patient's other discs (at chance on SPIDER: see docs/validation.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from lvp.errors import ConfigError
from lvp.measure.types import LevelMeasurements
from lvp.scales import PATHOLOGIES, SCALES  # noqa: F401 - PATHOLOGIES re-exported (grading order)

# Grade names come from the one vocabulary (lvp.scales), shared with the reading database and the panel.
HERNIATION_NAMES = SCALES["herniation"].names
STENOSIS_NAMES = SCALES["canal_stenosis"].names
RECESS_NAMES = SCALES["lateral_recess_left"].names
PFIRRMANN_NAMES = SCALES["pfirrmann"].names
NARROWING_NAMES = SCALES["narrowing"].names
BUNDLED_CALIBRATION = Path(__file__).with_name("grading_calibration.json")


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
    # "bundled" = lvp/grading_calibration.json; a path to another calibration file; "" = none
    # (literature / a-priori rules for every grade).
    calibration: str = "bundled"
    sources: dict[str, str] = field(
        default_factory=lambda: {
            "herniation": "Fardon et al., Spine J 2014 (nomenclature 2.0)",
            "canal_stenosis": "Schonstrom et al. Spine 1985; Hamanishi et al. Spine 1994; Ullrich et al. 1980",
            "lateral_recess": "Bartynski & Lin, AJNR 2003",
            "pfirrmann": "Pfirrmann et al., Spine 2001; model calibrated on SPIDER grades",
            "narrowing": "model calibrated on SPIDER grades",
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


@lru_cache(maxsize=8)
def _read_calibration(path: str, stamp: tuple[int, int]) -> dict:  # stamp: re-read a changed file
    try:
        cal = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read grading calibration {path}: {err}") from None
    if cal.get("schema") != "lvp-grading-calibration" or "models" not in cal:
        raise ConfigError(f"{path} is not an LVP grading calibration file")
    return cal


def load_calibration(spec: str | Path | dict | None = "bundled") -> dict | None:
    """The calibration in use: ``"bundled"`` (the packaged file), a path, a dict, or None / ""."""
    if isinstance(spec, dict):
        return spec
    if spec is None or str(spec) == "":
        return None
    path = BUNDLED_CALIBRATION if str(spec) == "bundled" else Path(spec)
    try:
        st = path.stat()
    except OSError as err:
        raise ConfigError(f"cannot read grading calibration {path}: {err}") from None
    return _read_calibration(str(path), (st.st_mtime_ns, st.st_size))


def calibration_feature(m: LevelMeasurements, name: str, cal: dict) -> float | None:
    """A model input: a measurement by name, or one derived from measurements.

    ``log_disc_signal_ratio`` = ln(disc_signal_ratio); ``height_vs_level`` = the mid-disc height
    over the median mid-disc height of that level on the calibration data (levels with few
    calibration discs use the median of all discs).
    """
    if name == "log_disc_signal_ratio":
        v = m.value("disc_signal_ratio")
        return None if v is None or v <= 0 else float(np.log(v))
    if name == "height_vs_level":
        norms = cal["level_norms"]
        h = m.value(norms["measurement"])
        ref = norms["by_level"].get(m.level, norms["default"])
        return None if h is None or not ref else h / ref
    return m.value(name)


def _model_inputs(m: LevelMeasurements, model: dict, cal: dict) -> tuple[np.ndarray | None, list[str]]:
    vals = [calibration_feature(m, f, cal) for f in model["features"]]
    source = {"log_disc_signal_ratio": "disc_signal_ratio", "height_vs_level": cal["level_norms"]["measurement"]}
    missing = [f"{f} (from {source[f]})" if f in source else f for f, v in zip(model["features"], vals) if v is None]
    return (None, missing) if missing else (np.asarray(vals, float), [])


def model_formula(model: dict) -> str:
    """The linear predictor of a fitted model as text (raw units)."""
    terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.3g}*{f}" for c, f in zip(model["coef"], model["features"]))
    if model["kind"] == "ordinal":
        return f"eta = {terms.lstrip('+ ')}; P(>= k) = sigmoid(eta - c_k), c = " + ", ".join(
            f"{c:.3g}" for c in model["cutpoints"]
        )
    return f"sigmoid({model['intercept']:.3g} {terms})"


def logistic_probability(model: dict, x: np.ndarray) -> float:
    """P(positive) of a fitted logistic model (raw-unit coefficients)."""
    return _sig(model["intercept"] + float(np.dot(model["coef"], x)))


def ordinal_model_probabilities(model: dict, x: np.ndarray) -> list[float]:
    """Class probabilities of a proportional-odds model: P(>= k) = sigmoid(eta - c_k)."""
    eta = float(np.dot(model["coef"], x))
    at_least = [1.0] + [_sig(eta - c) for c in model["cutpoints"]] + [0.0]
    for k in range(2, len(at_least) - 1):  # cutpoints are increasing; guard rounding
        at_least[k] = min(at_least[k], at_least[k - 1])
    return [max(at_least[k] - at_least[k + 1], 0.0) for k in range(len(at_least) - 1)]


def _cal_source(cal: dict) -> str:
    return f"LVP model fitted {cal.get('fitted', '?')} on {cal.get('data_short', 'SPIDER grades')}"


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


def _herniation_calibrated(m: LevelMeasurements, r: GradingRules, cal: dict, d: float) -> Grade:
    mh, mb = cal["models"]["herniation"], cal["models"]["bulging"]
    xh, miss_h = _model_inputs(m, mh, cal)
    xb, miss_b = _model_inputs(m, mb, cal)
    if xh is None or xb is None:
        return _not_assessable(
            "posterior_displacement_mm", f"calibrated model needs {', '.join(miss_h + miss_b)} (not measured)"
        )
    p_h = logistic_probability(mh, xh)
    p_any = max(p_h, logistic_probability(mb, xb))
    w = m.value("herniation_base_width_mm") or 0.0
    p_ext = _sig((d - w) / r.displacement_scale_mm) if w > 0 else 0.0
    probs = [1 - p_any, p_any - p_h, p_h * (1 - p_ext), p_h * p_ext]
    rule = (
        f"{_cal_source(cal)}: P(herniation) = {model_formula(mh)}; P(>= bulge) = max(P(herniation), "
        f"{model_formula(mb)}); protrusion vs extrusion by Fardon 2014 (displacement vs base width "
        f"{w:.1f} mm); most probable grade"
    )
    return _grade(probs, HERNIATION_NAMES, "posterior_displacement_mm", d, rule)


def _pfirrmann_calibrated(m: LevelMeasurements, cal: dict, ratio: float) -> Grade:
    model = cal["models"]["pfirrmann"]
    x, missing = _model_inputs(m, model, cal)
    if x is None:
        return _not_assessable("disc_signal_ratio", f"calibrated model needs {', '.join(missing)} (not measured)")
    probs = ordinal_model_probabilities(model, x)
    rule = f"{_cal_source(cal)}: proportional-odds model {model_formula(model)}, k = II..V; most probable grade"
    return _grade(probs, PFIRRMANN_NAMES, "disc_signal_ratio", ratio, rule, first=1)


def _narrowing_calibrated(m: LevelMeasurements, cal: dict) -> Grade:
    model = cal["models"]["narrowing"]
    h = m.value("disc_height_middle_mm")
    x, missing = _model_inputs(m, model, cal)
    if x is None or h is None:
        return _not_assessable("disc_height_middle_mm", f"calibrated model needs {', '.join(missing)} (not measured)")
    p = logistic_probability(model, x)
    rule = f"{_cal_source(cal)}: P(narrowing) = {model_formula(model)}; narrowing when P > 0.5"
    return _grade([1 - p, p], NARROWING_NAMES, "disc_height_middle_mm", h, rule)


def grade_herniation(m: LevelMeasurements, r: GradingRules, cal: dict | None = None) -> Grade:
    """None / bulge / protrusion / extrusion: calibrated on SPIDER when ``cal`` is given, else Fardon 2014."""
    d = m.value("posterior_displacement_mm")
    if d is None:
        return _not_assessable("posterior_displacement_mm", "no body margins beside the disc")
    if cal is not None:
        return _herniation_calibrated(m, r, cal, d)
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


def grade_pfirrmann(m: LevelMeasurements, r: GradingRules, cal: dict | None = None) -> Grade:
    """Pfirrmann I-V: calibrated model when ``cal`` is given, else signal-ratio thresholds (V if collapsed)."""
    ratio = m.value("disc_signal_ratio")
    if ratio is None:
        return _not_assessable("disc_signal_ratio", "disc or CSF signal not measurable")
    if cal is not None:
        return _pfirrmann_calibrated(m, cal, ratio)
    probs = ordinal_probabilities(ratio, r.pfirrmann_signal, r.pfirrmann_scale)
    height = m.value("disc_height_ratio")
    collapse = "" if height is None else f"; height ratio {height:.2f} < {r.collapse_ratio} gives V"
    if height is not None:
        p_collapse = _sig((r.collapse_ratio - height) / r.narrowing_scale)
        probs = [p * (1 - p_collapse) for p in probs[:4]] + [probs[4] + p_collapse * (1 - probs[4])]
    t = r.pfirrmann_signal
    rule = f"disc/CSF T2 signal ratio >= {t[0]} I, >= {t[1]} II, >= {t[2]} III, >= {t[3]} IV, else V{collapse}"
    return _grade(probs, PFIRRMANN_NAMES, "disc_signal_ratio", ratio, rule, first=1)


def grade_narrowing(m: LevelMeasurements, r: GradingRules, cal: dict | None = None) -> Grade:
    """Disc narrowing: calibrated model when ``cal`` is given, else height below the patient's other discs."""
    if cal is not None:
        return _narrowing_calibrated(m, cal)
    ratio = m.value("disc_height_ratio")
    if ratio is None:
        return _not_assessable("disc_height_ratio", "fewer than three discs measured in this patient")
    p = _sig((r.narrowing_ratio - ratio) / r.narrowing_scale)
    rule = f"mean disc height < {r.narrowing_ratio} x median of the patient's other discs"
    return _grade([1 - p, p], NARROWING_NAMES, "disc_height_ratio", ratio, rule)


def grade_level(
    measurements: LevelMeasurements, rules: GradingRules | None = None, calibration: dict | str | None = None
) -> dict[str, Grade]:
    """All grades of one level: herniation, canal_stenosis, lateral_recess_left/right, pfirrmann, narrowing.

    ``calibration`` (a loaded dict or a path) overrides ``rules.calibration`` (default: the
    bundled SPIDER calibration).
    """
    r = rules or GradingRules()
    cal = load_calibration(r.calibration if calibration is None else calibration)
    return {
        "herniation": grade_herniation(measurements, r, cal),
        "canal_stenosis": grade_canal(measurements, r),
        "lateral_recess_left": grade_recess(measurements, r, "left"),
        "lateral_recess_right": grade_recess(measurements, r, "right"),
        "pfirrmann": grade_pfirrmann(measurements, r, cal),
        "narrowing": grade_narrowing(measurements, r, cal),
    }
