"""One vocabulary (issue 12 item 1): lvp.labels holds the label-map -> classes mapping, the level
name of a disc segment, SPIDER's disc order and the terminology contexts, and nothing else in the
product spells them out again.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lvp import labels
from lvp.labels import (
    BACKGROUND,
    CANAL,
    CANAL_LABEL,
    DISC,
    DISC_LABELS,
    DISCS_FROM_BOTTOM,
    SACRUM_LABEL,
    STRUCTURES,
    VERTEBRA,
    VERTEBRA_LABELS,
    level_of,
    semantic_classes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCT = REPO_ROOT / "LumbarVNetPro"


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in PRODUCT.rglob("*.py") if "__pycache__" not in p.parts}


def test_semantic_classes_of_every_output_value():
    values = np.array(sorted(STRUCTURES) + [0, 1, 7, 200], dtype=np.int16)
    classes = semantic_classes(values)
    assert classes.dtype == np.uint8 and classes.shape == values.shape
    expected = {**{v: VERTEBRA for v in VERTEBRA_LABELS.values()}, SACRUM_LABEL: VERTEBRA,
                **{v: DISC for v in DISC_LABELS.values()}, CANAL_LABEL: CANAL}
    for value, cls in zip(values.tolist(), classes.tolist()):
        assert cls == expected.get(value, BACKGROUND), value


def test_level_names():
    assert level_of("L4-L5 disc") == "L4-L5" and level_of("L4") == "L4" and level_of("canal") == "canal"
    for value, st in STRUCTURES.items():
        if st.kind == "disc":
            assert DISC_LABELS[level_of(st.name)] == value
    assert DISCS_FROM_BOTTOM[0] == "L5-S" and all(d in DISC_LABELS for d in DISCS_FROM_BOTTOM)


def test_the_scene_uses_the_one_terminology_context():
    scene = (PRODUCT / "LumbarVNetProLib" / "scene.py").read_text()
    assert "TERMINOLOGY_CONTEXT," in scene and "ANATOMIC_CONTEXT," in scene
    assert "General Anatomy list" not in scene and labels.TERMINOLOGY_CONTEXT not in scene


def test_one_terminology_context_in_the_seg_nrrd_and_the_scene():
    scene = (PRODUCT / "LumbarVNetProLib" / "scene.py").read_text()
    assert "TERMINOLOGY_CONTEXT," in scene and "ANATOMIC_CONTEXT," in scene
    for path, text in _sources().items():
        if path.name != "labels.py":
            assert labels.TERMINOLOGY_CONTEXT not in text and "General Anatomy list" not in text, path


def test_no_second_copy_of_the_vocabulary_in_the_product():
    spider = re.compile(r'"L5-S",\s*"L4-L5",\s*"L3-L4"')
    for path, text in _sources().items():
        if path.name == "labels.py":
            continue
        assert 'removesuffix(" disc")' not in text and 'endswith(" disc")' not in text, path
        assert not spider.search(text), path


def test_one_vertebra_order_for_counting_and_listing_levels():
    # The orders each user derives from SPINE_TOP_DOWN are those they spelled out before (issue 13 review).
    from lvp.grading import with_missing_levels
    from lvp.labelling import numbering
    from lvp.validation.numbering import _disc_above

    assert labels.VERTEBRA_ORDER == tuple(VERTEBRA_LABELS)
    assert numbering._ORDER == (*(f"T{i}" for i in range(1, 13)), "L1", "L2", "L3", "L4", "L5")
    assert _disc_above("T12-L1") == "T11-T12" and _disc_above("L6-S") == "L5-L6" and _disc_above("T1-T2") is None
    assert labels.LEVEL_ORDER.index("L4-L5") < labels.LEVEL_ORDER.index("L5-L6") < labels.LEVEL_ORDER.index("L5-S")
    # The report lists rows in that order whatever order they come in.
    rows = [{"level": n} for n in ("L5-S", "T11-T12", "L1-L2", "T12-L1", "L2-L3", "L3-L4", "L4-L5")]
    assert [r["level"] for r in with_missing_levels(rows, None)] == [
        "T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S"]
    # Nobody else spells the order out again.
    spelled = re.compile(r'f"T\{\w+\}" for \w+ in range\(1, 1[23]\)|f"T\{\w+\}-T\{\w+ \+ 1\}"')
    for path, text in _sources().items():
        if path.name != "labels.py":
            assert not spelled.search(text), path
