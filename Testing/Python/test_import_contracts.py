"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and would catch a breach.

``lint-imports`` also runs in ``make lint``; here it runs on this tree and on a copy of the core
with two planted breaches (a VTK import in the core, an upward import from ``lvp.io``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, core_parent: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(core_parent))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_tree_keeps_every_contract():
    proc = _lint(REPO_ROOT, REPO_ROOT / "LumbarVNetPro")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_vtk_import_and_an_upward_import_break_the_contracts(tmp_path):
    core = tmp_path / "src" / "lvp"
    shutil.copytree(REPO_ROOT / "LumbarVNetPro" / "lvp", core, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (core / "labels.py").write_text((core / "labels.py").read_text() + "\nimport vtk  # planted\n")
    (core / "io" / "volume.py").write_text((core / "io" / "volume.py").read_text()
                                           + "\nfrom lvp import pipeline  # planted, upward\n")
    proc = _lint(tmp_path, tmp_path / "src")
    assert proc.returncode != 0
    assert "2 broken" in proc.stdout, proc.stdout[-3000:]
    assert "lvp.labels -> vtk" in proc.stdout and "lvp.io.volume -> lvp.pipeline" in proc.stdout
