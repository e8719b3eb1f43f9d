"""Shared helpers of the test_slicer_* tests (module path set-up and case fixtures).

Puts ``LumbarVNetPro/`` (the Slicer module folder) on ``sys.path`` so the tests import the
module's ``LumbarVNetProLib`` package and ``LumbarVNetPro.py`` as Slicer does. Test modules
load the fixtures with ``pytest_plugins``; PYTEST_DONT_REWRITE (no asserts here, and the
module is imported before pytest registers it as a plugin).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "LumbarVNetPro"
SAMPLE_DIR = REPO_ROOT / "Resources" / "Sample"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import slicer  # noqa: E402 - slicer-core (a test dependency), after the module folder is on sys.path


def process_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def reference_result(tmp_path_factory) -> Path:
    """An lvp-infer-shaped output folder built from the sample's reference mask."""
    from reference_result import build_reference_result

    out = tmp_path_factory.mktemp("reference_result")
    return build_reference_result(
        SAMPLE_DIR / "spider_sample_t2.nii.gz",
        SAMPLE_DIR / "spider_sample_labels.nii.gz",
        out,
        SAMPLE_DIR / "spider_sample_gradings.csv",
    )


@pytest.fixture()
def scene_with_sample():
    """A scene holding the sample image under a patient / study in the subject hierarchy."""
    from LumbarVNetProLib import scene as lvpscene

    scene = slicer.vtkMRMLScene()
    volume = lvpscene.volume_node_from_file(scene, SAMPLE_DIR / "spider_sample_t2.nii.gz", "sample")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "patient")
    study = sh.CreateStudyItem(patient, "study")
    lvpscene.subject_item(scene, volume, study)
    return scene, volume, study
