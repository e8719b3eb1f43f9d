"""Dependency installation plan, offline detection and the model catalogue checks (no network used)."""

from __future__ import annotations

import json
import socket
import sys

import pytest
from slicer_helpers import MODULE_DIR  # puts the module folder on sys.path

from LumbarVNetProLib import install
from LumbarVNetProLib.process import ProcessRunner

pytest_plugins = ("slicer_helpers",)  # the scene_with_sample fixture


def test_plan_installs_only_third_party_deps_never_core_or_simpleitk(tmp_path):
    reqs = ["torch==2.13.0", "SimpleITK==2.5.7", "simpleitk>=2", "numpy==2.4.6", "monai==1.6.1"]
    steps = install.pip_commands(reqs, tmp_path / "c.txt")
    assert steps == [["install", "--constraint", str(tmp_path / "c.txt"), "torch==2.13.0", "monai==1.6.1"]]
    assert install.pip_commands(["numpy==2.4.6"], tmp_path / "c.txt") == []
    # The constraints pin the installed SimpleITK so no dependency can replace it.
    assert "SimpleITK==" in install.constraints_text()
    names = {install.requirement_name(r).lower() for r in install.RUNTIME_REQUIREMENTS}
    assert not names & {"simpleitk", "numpy", "lumbarvnetpro"}
    # The core ships in the module folder: importable, nothing of it is pip-installed.
    assert install.core_available()
    assert "--no-deps" not in (MODULE_DIR / "LumbarVNetProLib" / "install.py").read_text()


def test_runtime_requirements_match_pyproject_pins():
    import re

    from slicer_helpers import REPO_ROOT

    pins = dict(re.findall(r'"([A-Za-z0-9_.\-]+)(?:\[\w+\])?==([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text()))
    for req in install.RUNTIME_REQUIREMENTS:
        name, version = req.split("==")
        assert pins.get(name) == version, f"{req} differs from pyproject.toml"


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
            tmp_path / "w",
            ProcessRunner(),
            sys.executable,
            requirements=["no-such-package-lvp==1.0"],
            host="127.0.0.1",
            port=port,
        )


def test_nothing_missing_runs_no_pip(tmp_path):
    class NoRunner:
        def start(self, *args, **kwargs):
            raise AssertionError("pip must not run when nothing is missing")

    assert install.install(tmp_path / "w", NoRunner(), sys.executable, requirements=["pytest>=1", "numpy"]) == []


def test_pip_failure_is_reported_in_one_line(tmp_path):
    # A real pip run against an unreachable index fails; its last line is the message.
    with pytest.raises(install.InstallError, match="pip install failed"):
        install.install(
            tmp_path / "w",
            _PipOffline(),
            sys.executable,
            requirements=["no-such-package-lvp==1.0"],
            host="127.0.0.1",
            port=_open_port_server(),
        )
    assert (tmp_path / "w" / "slicer-constraints.txt").read_text().startswith(("SimpleITK==", "numpy=="))


class _PipOffline(ProcessRunner):
    """Runs pip for real but with no index and no links, so it fails quickly and offline."""

    def start(self, args, env=None, cwd=None):
        return super().start([*args, "--no-index", "--find-links", "/nonexistent-lvp"], env=env, cwd=cwd)


def _open_port_server() -> int:
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    threading.Thread(target=lambda: [server.accept() for _ in range(8)], daemon=True).start()
    return server.getsockname()[1]


# ------------------------------------------------------------------ model catalogue (the core's)


def _model_folder(tmp_path, payload=b"weights v1"):
    from lvp.model_catalog import sha256_of

    folder = tmp_path / "offline-model"
    folder.mkdir()
    (folder / "net.onnx").write_bytes(payload)
    entry = {
        "name": "lvp-vnet",
        "version": "9.9",
        "input_spacing": [2.0, 1.0, 1.0],
        "network": {},
        "files": {"onnx": {"path": "net.onnx", "sha256": sha256_of(folder / "net.onnx")}},
    }
    (folder / "models.json").write_text(json.dumps({"default": "lvp-vnet", "models": [entry]}))
    return folder


def test_bundled_catalogue_is_found_and_verifies(monkeypatch):
    from slicer_helpers import REPO_ROOT

    from LumbarVNetProLib.models import bundled_model_dir, verify_model_folder

    monkeypatch.delenv("LVP_MODEL_DIR", raising=False)
    assert bundled_model_dir() == REPO_ROOT / "models"
    entry = verify_model_folder()
    assert entry.folder == REPO_ROOT / "models" and entry.name == "lvp-vnet"


def test_offline_folder_with_its_own_catalogue(tmp_path, monkeypatch):
    from LumbarVNetProLib.models import model_dir_for_run, verify_model_folder

    folder = _model_folder(tmp_path)
    assert verify_model_folder(folder).version == "9.9"
    monkeypatch.setenv("LVP_MODEL_DIR", str(folder))
    assert model_dir_for_run(None) == folder


def test_tampered_model_file_is_refused_with_a_clear_message(tmp_path):
    from LumbarVNetProLib.models import ModelCheckError, verify_model_folder
    from lvp.errors import ModelError

    folder = _model_folder(tmp_path)
    (folder / "net.onnx").write_bytes(b"weights v2")
    with pytest.raises(ModelError, match=r"net.onnx is corrupted or was replaced: sha256 .* differs") as err:
        verify_model_folder(folder)
    assert isinstance(err.value, ModelCheckError)
    (folder / "net.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        verify_model_folder(folder)
    with pytest.raises(ModelError, match="no models.json"):
        verify_model_folder(tmp_path)


def test_inference_with_a_tampered_model_does_not_start(tmp_path, scene_with_sample):
    from LumbarVNetProLib.logic import CaseLogic
    from lvp.errors import ModelError

    scene, volume, _ = scene_with_sample
    folder = _model_folder(tmp_path)
    (folder / "net.onnx").write_bytes(b"tampered")

    class NoRunner:
        def start(self, *args, **kwargs):
            raise AssertionError("no child may start with a tampered model")

    with pytest.raises(ModelError, match="corrupted"):
        CaseLogic(scene, runner=NoRunner()).startInference(volume, tmp_path / "out", "cpu", folder)
