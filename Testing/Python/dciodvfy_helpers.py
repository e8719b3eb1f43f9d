"""dciodvfy (Debian's dicom3tools) for the DICOM output tests: IOD validation of real files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy_or_skip() -> str:
    """The dciodvfy binary; CI must have it (.ci/run installs dicom3tools), elsewhere the test skips."""
    found = shutil.which("dciodvfy")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("dciodvfy is missing in CI: .ci/run installs Debian's dicom3tools")
    pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dciodvfy reports for a file (warnings are not errors)."""
    run = subprocess.run([dciodvfy_or_skip(), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
