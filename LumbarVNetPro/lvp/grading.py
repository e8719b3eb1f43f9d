"""Grades per disc level from its measurements: what the images support, and nothing else.

A musculoskeletal radiologist's review (issue 15) set what may be graded from which input:

* **SPIDER-calibrated models** (``confidence_kind: "calibrated"``) where radiologists' grades
  exist: Pfirrmann I-V (proportional odds) and narrowing (logistic), on the disc/CSF signal ratio
  and the mid-disc height relative to its level; and two probabilities *named for the label they
  predict*, ``P(SPIDER 'Disc herniation' label)`` and ``P(SPIDER 'Disc bulging' label)`` (the
  latter follows degeneration more than morphology on these slabs). Fitted on the 24 SPIDER
  patients the network trained on, checked on the 7 it never saw (docs/validation.md), shipped in
  ``lvp/grading_calibration.json``; the linear predictor is shrunk by the slope measured out of fold
  on the fitting patients and widened by the measured network-vs-reference measurement error
  (probit approximation: ``P = sigmoid(eta / sqrt(1 + pi * var / 8))``, ``var`` = sum of
  (coefficient x error SD)²), so a probability never claims more than the measurements carry.
* **Literature rules** (``confidence_kind: "heuristic"``: no radiologists' grades to calibrate
  against) only on a quantity that is the one the source measured:

  - *central canal stenosis* from the **dural sac cross-sectional area**, and only where a valid
    axial section gives it (an axial series inside the sagittal coverage, or a near-isotropic 3D
    sagittal acquisition whose axial reformat holds the whole sac and recesses): < 100 mm²
    relative stenosis (reported "mild"), < 76 mm² absolute stenosis (reported "moderate")
    (Schönström et al. 1985, dural sac area on CT; Hamanishi et al. 1994, transverse MRI,
    < 100 mm²). "severe" is never given from an area: it is a morphological grade (no CSF around
    the roots, Schizas et al. 2010 C/D; Lee et al. 2011 grade 3) that LVP does not assess;
  - *Fardon type* (bulge / protrusion / extrusion, Fardon et al., Spine J 2014) only where the
    axial section holds the whole disc, on a near-isotropic grid.

  Their probabilities are ``P(true value beyond threshold)`` under a normal measurement error
  whose SD is the measured network-vs-reference error of that quantity (or, where none was
  measured, an a-priori one, said so in the rule).

**Withheld** (``grade`` null, ``status`` "not assessable", ``reason`` says why; the measurement
behind it is still shown):

* central canal on sagittal-only input ("needs an axial series"; the dural sac AP diameter stays
  a drawn measurement: the bony-canal AP cut-offs of Verbiest / Ullrich do not apply to the sac);
* any central canal grade at or above T12-L1 (cord / conus level: lumbar stenosis criteria do not
  apply) and where the canal label vanishes ("canal not visualised");
* lateral recesses, always: the recess is bony (vertebral body to superior articular process,
  Steurer et al. 2011); LVP segments no recess or facet;
* everything at a disc cut by the field of view;
* a calibrated model whose input is missing (never guessed from the remaining inputs).

``confidence`` is the probability of the chosen (most probable) grade. ``calibration: ""`` in a
rules YAML switches the calibrated models off and grades Pfirrmann and narrowing by the older
a-priori rules below (heuristic).

Over 400 lines on purpose: every grade's rule, its source and its measured error sit next
to each other, so a reviewer reads one rule whole (the vocabulary itself is in lvp.scales).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

from lvp.errors import ConfigError
from lvp.measure.canal import ISO_MAX_MM
from lvp.measure.types import LevelMeasurements
from lvp.scales import PATHOLOGIES, SCALES  # PATHOLOGIES re-exported (grading order)

# Grade names come from the one vocabulary (lvp.scales), shared with the reading database and the panel.
HERNIATION_NAMES = SCALES["herniation"].names
STENOSIS_NAMES = SCALES["canal_stenosis"].names
RECESS_NAMES = SCALES["lateral_recess_left"].names
PFIRRMANN_NAMES = SCALES["pfirrmann"].names
NARROWING_NAMES = SCALES["narrowing"].names
BUNDLED_CALIBRATION = Path(__file__).with_name("grading_calibration.json")

CALIBRATED = "calibrated"
HEURISTIC = "heuristic"
NOT_ASSESSABLE = "not assessable"
NOT_FOUND = "not found"
NEEDS_AXIAL = "not assessable: needs an axial series"
CORD_LEVEL = "not assessable: cord level"
CANAL_NOT_VISUALISED = "not assessable: canal not visualised"
CUT_BY_FOV = "not assessable: disc cut by the field of view"
RECESS_REASON = (
    "not assessable: the lateral recess is bony (vertebral body to superior articular process, Steurer 2011); "
    "LVP segments no recess or facet joint, so no recess is measured (needs an axial segmentation model)"
)
# What each calibrated probability predicts (the label, named as the radiologists' data set names it).
PREDICTS = {
    "herniation": "P(SPIDER 'Disc herniation' label)",
    "bulging": "P(SPIDER 'Disc bulging' label)",
}


@dataclass
class GradingRules:
    """Thresholds of every rule (see the module docstring for their sources)."""

    displaced_mm: float = 1.0
    bulge_max_mm: float = 3.0
    broad_fraction: float = 0.25
    displacement_scale_mm: float = 0.5  # a-priori error SD where none was measured
    fraction_scale: float = 0.04
    canal_area_mm2: tuple[float, float] = (100.0, 76.0)  # relative ("mild"), absolute ("moderate") below
    canal_area_scale_mm2: float = 8.0  # a-priori error SD where none was measured
    pfirrmann_signal: tuple[float, float, float, float] = (0.30, 0.18, 0.115, 0.085)  # II, III, IV, V below
    pfirrmann_scale: float = 0.02
    collapse_ratio: float = 0.5
    narrowing_ratio: float = 0.75
    narrowing_scale: float = 0.05
    # A thin disc with a bright centre is not a disc Pfirrmann describes (grade V is collapsed and
    # dark): partial volume or a segmentation error. Both grades that read the signal are withheld.
    implausible_height_vs_level: float = 0.75
    implausible_signal_ratio: float = 0.25
    # "bundled" = lvp/grading_calibration.json; a path to another calibration file; "" = none
    # (a-priori rules for Pfirrmann and narrowing, no SPIDER-label probabilities).
    calibration: str = "bundled"
    sources: dict[str, str] = field(
        default_factory=lambda: {
            "herniation": "Fardon et al., Spine J 2014 (nomenclature 2.0), on a valid axial section only",
            "canal_stenosis": "dural sac area: Schonstrom et al. 1985; Hamanishi et al. 1994",
            "lateral_recess": "not graded (bony recess not segmented; Steurer et al. 2011)",
            "pfirrmann": "Pfirrmann et al., Spine 2001; model calibrated on SPIDER grades",
            "narrowing": "model calibrated on SPIDER grades",
        }
    )

    @classmethod
    def from_yaml(cls, path: str | Path) -> GradingRules:
        """Rules with the values of a YAML mapping overriding the defaults."""
        import yaml  # here: a case graded by the default rules does not pay for importing PyYAML

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
    """One grade with its probabilities and the measurement and rule behind it.

    ``status`` is "graded", "not assessable" or "not found" (with ``reason``); ``confidence_kind``
    says whether the probabilities are ``calibrated`` on radiologists' grades or ``heuristic``;
    ``predicted`` lists named probabilities of a data set's labels (``{"name", "value", "kind"}``);
    ``source`` says where the value comes from (e.g. the axial series).
    """

    grade: int | None
    name: str
    probabilities: list[float]
    confidence: float | None
    measurement: str | None
    value: float | None
    rule: str
    status: str = "graded"
    reason: str | None = None
    confidence_kind: str | None = None
    predicted: list[dict] = field(default_factory=list)
    source: str | None = None

    def to_dict(self) -> dict:
        """The report.json grade object (schema 1.1)."""
        return {
            "grade": self.grade,
            "name": self.name,
            "probabilities": [round(float(p), 4) for p in self.probabilities],
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "confidence_kind": self.confidence_kind,
            "measurement": self.measurement,
            "value": None if self.value is None else round(float(self.value), 3),
            "rule": self.rule,
            "status": self.status,
            "reason": self.reason,
            "source": self.source,
            "predicted": [dict(p, value=round(float(p["value"]), 4)) for p in self.predicted],
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
    slope = model.get("shrinkage", 1.0)
    shrink = f" x {slope:.2f} (out-of-fold slope)" if slope != 1.0 else ""
    if model["kind"] == "ordinal":
        return f"eta = {terms.lstrip('+ ')}; P(>= k) = sigmoid((eta - c_k){shrink}), c = " + ", ".join(
            f"{c:.3g}" for c in model["cutpoints"]
        )
    return f"sigmoid(({model['intercept']:.3g} {terms}){shrink})"


def error_variance(model: dict, cal: dict | None) -> float:
    """Variance of the linear predictor from the measured measurement error of each input."""
    sds = ((cal or {}).get("measurement_error") or {}).get("feature_sd") or {}
    return float(sum((c * sds.get(f, 0.0)) ** 2 for c, f in zip(model["coef"], model["features"])))


def _widen(eta: float, model: dict, var: float) -> float:
    """Shrink by the out-of-fold slope, then widen by the measurement error (probit approximation)."""
    return eta * model.get("shrinkage", 1.0) / math.sqrt(1.0 + math.pi * var / 8.0)


def logistic_probability(model: dict, x: np.ndarray, var: float = 0.0) -> float:
    """P(positive) of a fitted logistic model (raw-unit coefficients), with its error variance ``var``."""
    return _sig(_widen(model["intercept"] + float(np.dot(model["coef"], x)), model, var))


def ordinal_model_probabilities(model: dict, x: np.ndarray, var: float = 0.0) -> list[float]:
    """Class probabilities of a proportional-odds model: P(>= k) = sigmoid(eta - c_k)."""
    eta = float(np.dot(model["coef"], x))
    at_least = [1.0] + [_sig(_widen(eta - c, model, var)) for c in model["cutpoints"]] + [0.0]
    for k in range(2, len(at_least) - 1):  # cutpoints are increasing; guard rounding
        at_least[k] = min(at_least[k], at_least[k - 1])
    return [max(at_least[k] - at_least[k + 1], 0.0) for k in range(len(at_least) - 1)]


def _cal_source(cal: dict) -> str:
    return f"LVP model fitted {cal.get('fitted', '?')} on {cal.get('data_short', 'SPIDER grades')}"


def _sig(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(x, -50, 50))))


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def ordinal_probabilities(
    value: float, thresholds: tuple[float, ...], scale: float, decreasing: bool = True
) -> list[float]:
    """Grade probabilities under a normal error of SD ``scale``: grade k+1 when the true value is
    below threshold k (``decreasing``), i.e. P(grade >= k+1) = Phi((t_k - value) / scale).
    """
    sign = 1.0 if decreasing else -1.0
    at_least = [1.0] + [_phi(sign * (t - value) / scale) for t in thresholds] + [0.0]
    for k in range(2, len(at_least) - 1):
        at_least[k] = min(at_least[k], at_least[k - 1])
    return [max(at_least[k] - at_least[k + 1], 0.0) for k in range(len(at_least) - 1)]


def _grade(probs: list[float], names: tuple[str, ...], measurement: str, value: float, rule: str,
           kind: str, first: int = 0, **extra) -> Grade:
    k = int(np.argmax(probs))
    return Grade(k + first, names[k], probs, probs[k], measurement, value, rule, confidence_kind=kind, **extra)


def _not_assessable(measurement: str | None, why: str, value: float | None = None, **extra) -> Grade:
    reason = why if why.startswith("not assessable") else f"not assessable: {why}"
    return Grade(None, NOT_ASSESSABLE, [], None, measurement, value, reason, status=NOT_ASSESSABLE,
                 reason=reason, **extra)


def not_found_grade(reason: str) -> Grade:
    """The grade of an expected level that was not found (``status`` "not found")."""
    return Grade(None, NOT_FOUND, [], None, None, None, reason, status=NOT_FOUND, reason=reason)


def is_cord_level(level: str) -> bool:
    """At or above T12-L1 (upper vertebra thoracic): cord / conus level, no lumbar stenosis criteria."""
    return level.split("-")[0].startswith("T")


def error_sd(cal: dict | None, name: str, default: float) -> tuple[float, bool]:
    """The measured network-vs-reference error SD of a measurement, else ``default`` (and False)."""
    sds = ((cal or {}).get("measurement_error") or {}).get("measurement_sd") or {}
    v = sds.get(name)
    return (float(v), True) if v else (float(default), False)


def _error_text(name: str, sd: float, measured: bool) -> str:
    how = "measured network-vs-reference error" if measured else "a-priori error (none measured)"
    return f"normal error SD {sd:.2g} ({how}) for {name}"


def spider_label_probabilities(m: LevelMeasurements, cal: dict | None, error: bool = True) -> list[dict]:
    """The calibrated probabilities of SPIDER's herniation and bulging labels (empty without inputs)."""
    if cal is None:
        return []
    out = []
    for key in ("herniation", "bulging"):
        model = cal["models"][key]
        x, missing = _model_inputs(m, model, cal)
        if x is None:
            continue
        p = logistic_probability(model, x, error_variance(model, cal) if error else 0.0)
        out.append({"name": PREDICTS[key], "value": p, "kind": CALIBRATED, "model": model_formula(model)})
    if len(out) == 2:  # a herniation label implies a displaced disc: P(bulging label or worse) >= P(herniation)
        out[1]["value"] = max(out[1]["value"], out[0]["value"])
    return out


def _axial_ok_for_disc(m: LevelMeasurements) -> bool:
    return bool(m.section.get("disc_whole")) and float(m.section.get("voxel_mm", 99.0)) <= ISO_MAX_MM


def grade_herniation(m: LevelMeasurements, r: GradingRules, cal: dict | None = None, error: bool = True) -> Grade:
    """Fardon type only on a valid axial section; otherwise withheld, with the displacement shown and
    the calibrated SPIDER-label probabilities (``predicted``) attached either way.
    """
    d = m.value("posterior_displacement_mm")
    predicted = spider_label_probabilities(m, cal, error)
    if d is None:
        return _not_assessable("posterior_displacement_mm", "posterior displacement not measured (see notes)",
                               predicted=predicted)
    if not _axial_ok_for_disc(m):
        return _not_assessable(
            "posterior_displacement_mm",
            f"{NEEDS_AXIAL} (a Fardon type compares the displacement with its base on an axial image; the "
            "sagittal slab does not hold the whole disc on a near-isotropic grid); displacement shown as a "
            "measurement", value=d, predicted=predicted, confidence_kind=CALIBRATED if predicted else None)
    w = m.value("herniation_base_width_mm") or 0.0
    frac = m.value("displacement_circumference_fraction") or 0.0
    sd, measured = error_sd(cal, "posterior_displacement_mm", r.displacement_scale_mm)
    p_disp = _phi((d - r.displaced_mm) / sd)
    p_broad = _phi((frac - r.broad_fraction) / r.fraction_scale)
    p_big = _phi((d - r.bulge_max_mm) / sd)
    p_ext = _phi((d - w) / sd) if w > 0 else 0.0
    bulge = p_disp * p_broad * (1 - p_big)
    focal = p_disp - bulge
    probs = [1 - p_disp, bulge, focal * (1 - p_ext), focal * p_ext]
    rule = (
        f"Fardon 2014 on the axial section through the disc: displacement < {r.displaced_mm} mm none; "
        f"> {r.broad_fraction:.0%} of circumference and < {r.bulge_max_mm} mm bulge; otherwise protrusion if "
        f"displacement < base width ({w:.1f} mm), else extrusion; {_error_text('the displacement', sd, measured)}"
    )
    return _grade(probs, HERNIATION_NAMES, "posterior_displacement_mm", d, rule, HEURISTIC, predicted=predicted,
                  source="axial reformat of a near-isotropic sagittal acquisition (whole disc in the slab)")


def grade_canal(m: LevelMeasurements, r: GradingRules, axial_area: dict | None = None,
                cal: dict | None = None) -> Grade:
    """Central canal stenosis from the dural sac area on a valid axial section, else withheld.

    ``axial_area``: ``{"value": mm2, "source": text}`` from the axial series (lvp.axial), used
    first; otherwise the dural sac area of a valid axial reformat, if measured.
    """
    ap = m.value("canal_ap_diameter_mm")
    if is_cord_level(m.level):
        return _not_assessable(
            "canal_ap_diameter_mm",
            f"{CORD_LEVEL} (at or above T12-L1 the canal holds the cord or conus; lumbar stenosis criteria apply "
            "from L1-L2 down)", value=ap)
    if m.canal_visualised is False:
        return _not_assessable(None, f"{CANAL_NOT_VISUALISED} (the canal label vanishes at this disc)")
    if axial_area is not None and axial_area.get("value") is not None:
        area, source = float(axial_area["value"]), str(axial_area.get("source") or "axial series")
    elif m.value("dural_sac_area_mm2") is not None:
        area, source = float(m.value("dural_sac_area_mm2")), "axial reformat of a near-isotropic sagittal acquisition"
    else:
        why = m.section.get("why_not") or "no valid axial section"
        shown = f"; dural sac AP diameter {ap:.1f} mm shown as a measurement, not graded" if ap is not None else ""
        return _not_assessable(
            "canal_ap_diameter_mm",
            f"{NEEDS_AXIAL} (central stenosis is graded by dural sac cross-sectional area or axial morphology; "
            f"here {why}){shown}", value=ap)
    sd, measured = error_sd(cal, "dural_sac_area_mm2", r.canal_area_scale_mm2)
    t = r.canal_area_mm2
    probs = ordinal_probabilities(area, tuple(t), sd) + [0.0]
    rule = (
        f"dural sac cross-sectional area < {t[0]:.0f} mm2 relative stenosis (reported mild), < {t[1]:.0f} mm2 "
        f"absolute stenosis (reported moderate) (Schonstrom 1985; Hamanishi 1994); 'severe' is a morphological "
        f"grade not given from an area; {_error_text('the area', sd, measured)}"
    )
    return _grade(probs, STENOSIS_NAMES, "dural_sac_area_mm2", area, rule, HEURISTIC, source=source)


def grade_recess(m: LevelMeasurements, side: str) -> Grade:
    """Always withheld: the bony lateral recess is not segmented (see the module docstring)."""
    return _not_assessable(None, RECESS_REASON)


def implausible_signal(m: LevelMeasurements, r: GradingRules, cal: dict | None) -> str | None:
    """Why the height and signal of a disc contradict each other (thin and bright), else None."""
    ratio = m.value("disc_signal_ratio")
    rel = calibration_feature(m, "height_vs_level", cal) if cal is not None else m.value("disc_height_ratio")
    if ratio is None or rel is None or not (rel < r.implausible_height_vs_level and ratio > r.implausible_signal_ratio):
        return None
    return (f"disc height and signal disagree: {rel:.2f} of the level's usual height yet a bright centre "
            f"(signal ratio {ratio:.2f} > {r.implausible_signal_ratio}); partial volume or a segmentation error, "
            "check the image")


def grade_pfirrmann(m: LevelMeasurements, r: GradingRules, cal: dict | None = None, error: bool = True) -> Grade:
    """Pfirrmann I-V: calibrated model when ``cal`` is given, else signal-ratio thresholds (V if collapsed)."""
    ratio = m.value("disc_signal_ratio")
    if ratio is None:
        return _not_assessable("disc_signal_ratio", "disc or CSF signal not measurable")
    odd = implausible_signal(m, r, cal)
    if odd:
        return _not_assessable("disc_signal_ratio", odd, value=ratio)
    if cal is not None:
        model = cal["models"]["pfirrmann"]
        x, missing = _model_inputs(m, model, cal)
        if x is None:
            return _not_assessable("disc_signal_ratio", f"calibrated model needs {', '.join(missing)} (not measured)",
                                   value=ratio)
        probs = ordinal_model_probabilities(model, x, error_variance(model, cal) if error else 0.0)
        rule = f"{_cal_source(cal)}: proportional-odds model {model_formula(model)}, k = II..V; most probable grade"
        return _grade(probs, PFIRRMANN_NAMES, "disc_signal_ratio", ratio, rule, CALIBRATED, first=1)
    probs = ordinal_probabilities(ratio, r.pfirrmann_signal, r.pfirrmann_scale)
    height = m.value("disc_height_ratio")
    collapse = "" if height is None else f"; height ratio {height:.2f} < {r.collapse_ratio} gives V"
    if height is not None:
        p_collapse = _sig((r.collapse_ratio - height) / r.narrowing_scale)
        probs = [p * (1 - p_collapse) for p in probs[:4]] + [probs[4] + p_collapse * (1 - probs[4])]
    t = r.pfirrmann_signal
    rule = f"disc/CSF T2 signal ratio >= {t[0]} I, >= {t[1]} II, >= {t[2]} III, >= {t[3]} IV, else V{collapse}"
    return _grade(probs, PFIRRMANN_NAMES, "disc_signal_ratio", ratio, rule, HEURISTIC, first=1)


def grade_narrowing(m: LevelMeasurements, r: GradingRules, cal: dict | None = None, error: bool = True) -> Grade:
    """Disc narrowing: calibrated model when ``cal`` is given, else height below the patient's other discs."""
    odd = implausible_signal(m, r, cal)
    if odd:
        return _not_assessable("disc_height_middle_mm", odd, value=m.value("disc_height_middle_mm"))
    if cal is not None:
        model = cal["models"]["narrowing"]
        h = m.value("disc_height_middle_mm")
        x, missing = _model_inputs(m, model, cal)
        if x is None or h is None:
            return _not_assessable("disc_height_middle_mm",
                                   f"calibrated model needs {', '.join(missing)} (not measured)", value=h)
        p = logistic_probability(model, x, error_variance(model, cal) if error else 0.0)
        rule = f"{_cal_source(cal)}: P(narrowing) = {model_formula(model)}; narrowing when P > 0.5"
        return _grade([1 - p, p], NARROWING_NAMES, "disc_height_middle_mm", h, rule, CALIBRATED)
    ratio = m.value("disc_height_ratio")
    if ratio is None:
        return _not_assessable("disc_height_ratio", "fewer than three discs measured in this patient")
    p = _sig((r.narrowing_ratio - ratio) / r.narrowing_scale)
    rule = f"mean disc height < {r.narrowing_ratio} x median of the patient's other discs"
    return _grade([1 - p, p], NARROWING_NAMES, "disc_height_ratio", ratio, rule, HEURISTIC)


def grade_level(
    measurements: LevelMeasurements,
    rules: GradingRules | None = None,
    calibration: dict | str | None = None,
    *,
    axial_area: dict | None = None,
    error: bool = True,
) -> dict[str, Grade]:
    """All grades of one level: herniation, canal_stenosis, lateral_recess_left/right, pfirrmann, narrowing.

    ``calibration`` (a loaded dict or a path) overrides ``rules.calibration`` (default: the
    bundled SPIDER calibration). ``axial_area`` (``{"value", "source"}``) is the dural sac area
    from an axial series at this level. ``error`` False leaves out the measured network-vs-reference
    measurement error (for measurements from reference masks).
    """
    r = rules or GradingRules()
    cal = load_calibration(r.calibration if calibration is None else calibration)
    m = measurements
    if m.cut_by_fov:
        why = f"{CUT_BY_FOV} (the disc touches the image's edge: its measurements are incomplete)"
        return {p: _not_assessable(None, why) for p in PATHOLOGIES}
    return {
        "herniation": grade_herniation(m, r, cal, error),
        "canal_stenosis": grade_canal(m, r, axial_area, cal),
        "lateral_recess_left": grade_recess(m, "left"),
        "lateral_recess_right": grade_recess(m, "right"),
        "pfirrmann": grade_pfirrmann(m, r, cal, error),
        "narrowing": grade_narrowing(m, r, cal, error),
    }


# ---------------------------------------------------------------- report rows of every expected level

# Every disc level a lumbar read expects (rows are listed in the order of lvp.labels.LEVEL_ORDER).
EXPECTED_LEVELS = ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S")
_TRANSITIONAL = {"L5-L6", "L6-S"}


def _missing_reason(level: str, vertebrae: set[str]) -> str:
    upper, lower = level.split("-")
    below = "the sacrum" if lower == "S" else lower
    if upper in vertebrae and (lower == "S" or lower in vertebrae):
        return (f"not found: no disc was segmented between {upper} and {below} (a collapsed or missed disc; see "
                "the labelling warnings and check the image)")
    return f"not found: outside the field of view or not segmented (no {upper} and {below} identified)"


def with_missing_levels(levels: list[dict], lab) -> list[dict]:
    """The report's level rows plus a "not found" row for every expected level that has none.

    Expected: T12-L1 to L5-S (L5-L6 and L6-S instead of L5-S when a sixth lumbar level was found),
    plus whatever was found above. Rows are ordered cranial to caudal.
    """
    from lvp.labels import DISC_LABELS, LEVEL_ORDER

    found = {lv["level"] for lv in levels}
    expected = [x for x in EXPECTED_LEVELS if not (x == "L5-S" and found & _TRANSITIONAL)]
    if found & _TRANSITIONAL:
        expected += sorted(_TRANSITIONAL)
    vertebrae = {str(v.name) for v in getattr(lab, "vertebrae", []) or []}
    rows = list(levels)
    for name in expected:
        if name in found or name not in DISC_LABELS:
            continue
        reason = _missing_reason(name, vertebrae)
        rows.append({"level": name, "disc_label": int(DISC_LABELS[name]), "center_lps": None, "confidence": None,
                     "measurements": {}, "grades": {p: not_found_grade(reason).to_dict() for p in PATHOLOGIES},
                     "scan_plane": None, "status": NOT_FOUND, "notes": [reason], "evidence": [], "section": {}})
    rank = {name: i for i, name in enumerate(LEVEL_ORDER)}
    if all(r["level"] in rank for r in rows):
        rows.sort(key=lambda r: rank[r["level"]])
    return rows


def regrade_canal_with_axial(grades: dict, meas: dict, axial: dict, rules: GradingRules | None = None) -> None:
    """Re-grade ``canal_stenosis`` of each level whose axial-series area is valid (``area_valid``)."""
    r = rules or GradingRules()
    cal = load_calibration(r.calibration)
    for entry in axial.get("levels") or []:
        m = meas.get(entry.get("level"))
        if m is None or entry.get("level") not in grades or not entry.get("area_valid"):
            continue
        if m.cut_by_fov:
            continue
        area = {"value": entry["canal_area_mm2"],
                "source": f"axial series slice {entry['slice_index']} ({entry.get('source') or 'axial series'})"}
        grades[entry["level"]]["canal_stenosis"] = grade_canal(m, r, area, cal)
