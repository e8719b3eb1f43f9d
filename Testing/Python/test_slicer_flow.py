"""The module's full flow (the Slicer self-test's own code) on slicer-core with the real model.

``LumbarVNetProLib.selftest.full_flow`` is what ``LumbarVNetProTest`` runs inside Slicer:
child-process inference with the bundled model, scene import, manual and AI-assisted reads in a
SQLite reading database, a segmentation edit and a level rename, Recompute, submit.
"""

from __future__ import annotations

import sys

import pytest
from slicer_helpers import REPO_ROOT, SAMPLE_DIR, slicer

pytest_plugins = ("slicer_helpers",)

SAMPLE = SAMPLE_DIR / "spider_sample_t2.nii.gz"
HAVE_MODEL = (REPO_ROOT / "models" / "models.json").is_file()


@pytest.mark.skipif(not HAVE_MODEL, reason="no bundled model in models/")
def test_full_flow_with_the_real_model(scene_with_sample, tmp_path):
    from LumbarVNetProLib.selftest import full_flow

    scene, volume, _ = scene_with_sample
    steps = []
    summary = full_flow(scene, volume, SAMPLE, tmp_path, python=sys.executable, device="cpu", log=steps.append)
    assert steps[0].startswith("Inference") and steps[-1] == "Submit"
    assert summary["report"]["model"]["name"] == "lvp-vnet"
    assert summary["recomputed"]["model"]["name"] == "label-map"
    assert "L5-L6" in [lv["level"] for lv in summary["recomputed"]["levels"]]
    # A row the AI could not grade ("not assessable") is graded by the reader with no AI decision.
    assert set(summary["decisions"].values()) - {None} == {"accepted", "modified"}
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1
    assert slicer is not None
