"""Shared pytest fixtures.

``shared_data`` points at ``../shared/data`` (real lumbar MRI, present on development and CI
machines only); tests that take it skip cleanly when it is absent. ``LVP_SHARED_DATA``
overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _shared_data_dir() -> Path:
    env = os.environ.get("LVP_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def sample_case() -> Path:
    """The bundled SPIDER sample case (ships with the project)."""
    return REPO_ROOT / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
