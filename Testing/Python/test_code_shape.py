"""The code's shape (issue 12, done-when): long modules say why, one segmentation result type,
labelling whole, no private helper crossing a package boundary that the issue named.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMIT = 400


def _modules():
    for folder in (REPO_ROOT / "LumbarVNetPro", REPO_ROOT / "benchmarks", REPO_ROOT / "Testing" / "tools"):
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts and "migrations" not in path.parts:
                yield path


def test_every_module_over_400_lines_says_why_at_its_top():
    for path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > LIMIT:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert "Over 400 lines" in doc, f"{path.relative_to(REPO_ROOT)}: {len(text.splitlines())} lines, no reason"


def test_one_segmentation_result_and_the_segmenter_protocol():
    from typing import Protocol

    from lvp import pipeline, segmenter

    assert issubclass(segmenter.Segmenter, Protocol)
    assert pipeline.MaskSegmenter is segmenter.MaskSegmenter
    assert pipeline.LabelMapSegmenter is segmenter.LabelMapSegmenter
    for path in _modules():
        text = path.read_text()
        assert "SegmentationOutput" not in text and "SemanticResult" not in text, path
    source = (REPO_ROOT / "LumbarVNetPro" / "lvp" / "pipeline.py").read_text()
    assert "getattr(seg" not in source and "getattr(lab" not in source


def test_labelling_is_one_package_exporting_what_others_use():
    import lvp.labelling

    assert not (REPO_ROOT / "LumbarVNetPro" / "lvp" / "labelling_from_labels.py").exists()
    assert (REPO_ROOT / "LumbarVNetPro" / "lvp" / "labelling" / "from_labels.py").is_file()
    assert sorted(lvp.labelling.__all__) == ["Instance", "Labelling", "label_levels"]
    assert "are\n\n" not in (lvp.labelling.__doc__ or "")  # the sentence that was cut off


def test_the_report_figure_uses_no_private_helper_of_preprocess():
    html = (REPO_ROOT / "LumbarVNetPro" / "lvp" / "report" / "html.py").read_text()
    assert "_resize_matrix" not in html and "resize_matrix" in html


def test_one_training_entry_point():
    loop = (REPO_ROOT / "LumbarVNetPro" / "lvp" / "training" / "loop.py").read_text()
    assert "def main(" not in loop and "__main__" not in loop
    for path in [*(REPO_ROOT / "configs").glob("*"), REPO_ROOT / "README.md"]:
        if path.is_file():
            assert "lvp.training.loop" not in path.read_text(), path
