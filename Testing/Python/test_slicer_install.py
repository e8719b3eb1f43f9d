"""Dependency installation plan, offline detection and model sha256 checks (no network used)."""

from __future__ import annotations

import json
import socket
import sys

import pytest
from slicer_helpers import MODULE_DIR  # noqa: F401 - puts the module folder on sys.path

from LumbarVNetProLib import install
from LumbarVNetProLib.models import ModelCheckError, sha256_file, verify_model_folder
from LumbarVNetProLib.process import ProcessRunner


def test_plan_installs_core_without_deps_first_and_never_simpleitk(tmp_path):
    reqs = ["torch==2.13.0", "SimpleITK==2.5.7", "simpleitk>=2", "numpy==2.4.6", "monai==1.6.1"]
    steps = install.pip_commands("/src/lvp", reqs, tmp_path / "c.txt")
    assert steps[0] == ["install", "--no-deps", "/src/lvp"]
    assert steps[1][:3] == ["install", "--constraint", str(tmp_path / "c.txt")]
    assert steps[1][3:] == ["torch==2.13.0", "monai==1.6.1"]
    # The constraints pin the installed SimpleITK so no dependency can replace it.
    assert "SimpleITK==" in install.constraints_text()
    assert not any("simpleitk" in r.lower() for r in install.RUNTIME_REQUIREMENTS)


def test_missing_requirements_detects_absent_packages():
    assert install.missing_requirements(["pytest>=1", "no-such-package-lvp==1.0"]) == ["no-such-package-lvp==1.0"]
    assert install.requirement_name("psycopg[binary]==3.3.9") == "psycopg"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_gives_a_clear_message(tmp_path):
    port = _closed_port()
    assert install.index_reachable("127.0.0.1", port, timeout_s=1) is False
    with pytest.raises(install.InstallError, match="Cannot reach the Python package index.*PIP_FIND_LINKS"):
        install.install(
            tmp_path,
            tmp_path / "w",
            ProcessRunner(),
            sys.executable,
            requirements=["no-such-package-lvp==1.0"],
            host="127.0.0.1",
            port=port,
        )


def test_pip_failure_is_reported_in_one_line(tmp_path):
    # Nothing missing -> only the core step runs; a folder that is no package makes pip fail for real.
    with pytest.raises(install.InstallError, match="pip install --no-deps failed"):
        install.install(tmp_path / "not-a-package", tmp_path / "w", ProcessRunner(), sys.executable, requirements=[])
    assert (tmp_path / "w" / "slicer-constraints.txt").read_text().startswith(("SimpleITK==", "numpy=="))


def test_model_folder_sha256(tmp_path):
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"weights v1")
    digest = sha256_file(weights)
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "lvp-vnet", "files": {"model.onnx": digest}}))
    assert verify_model_folder(tmp_path)["name"] == "lvp-vnet"
    weights.write_bytes(b"weights v2")
    with pytest.raises(ModelCheckError, match="corrupted"):
        verify_model_folder(tmp_path)
    # Catalogue hashes override a manifest that would vouch for the tampered file.
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"model.onnx": sha256_file(weights)}}))
    with pytest.raises(ModelCheckError, match="corrupted"):
        verify_model_folder(tmp_path, expected={"model.onnx": digest})
    with pytest.raises(ModelCheckError, match="missing"):
        verify_model_folder(tmp_path, expected={"other.onnx": digest})
