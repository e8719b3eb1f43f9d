"""Dependency installation (plan, offline wheel folder, private temporary folder) and the model catalogue checks.

No network is used: pip runs for real, offline, against a local wheel folder.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile

import pytest
from slicer_helpers import MODULE_DIR  # puts the module folder on sys.path

from LumbarVNetProLib import install
from LumbarVNetProLib.process import ProcessRunner

pytest_plugins = ("slicer_helpers",)  # the scene_with_sample fixture


def _wheel(folder, name="lvp_test_pkg", version="1.0"):
    """A minimal pure-Python wheel, so pip can install offline from a local folder."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: lvp-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return path


def test_plan_installs_only_third_party_deps_never_core_simpleitk_or_torch(tmp_path):
    reqs = ["scipy==1.17.1", "SimpleITK==2.5.7", "simpleitk>=2", "numpy==2.4.6", "PyYAML==6.0.4"]
    args = install.pip_arguments(reqs, tmp_path / "c.txt")
    assert args[args.index("off") + 1 : args.index("-c")] == ["scipy==1.17.1", "PyYAML==6.0.4"]
    assert args[-2:] == ["-c", str(tmp_path / "c.txt")] and "--no-deps" not in args
    assert install.pip_arguments(["numpy==2.4.6"], tmp_path / "c.txt") == []
    # The constraints pin the installed SimpleITK so no dependency can replace it.
    assert "SimpleITK==" in install.constraints_text()
    names = {install.requirement_name(r).lower() for r in install.RUNTIME_REQUIREMENTS}
    assert not names & {"simpleitk", "numpy", "lumbarvnetpro"}
    # CPU inference needs ONNX Runtime only: torch (GPU: the PyTorch extension), monai and
    # matplotlib are never installed into Slicer by this module.
    assert "onnxruntime" in names and not names & {"torch", "monai", "matplotlib"}
    # Sign in needs the reading database packages; a PostgreSQL URL adds its driver.
    reading = {install.requirement_name(r) for r in install.reading_requirements("sqlite:///x")}
    assert reading == {"SQLAlchemy", "alembic"}
    assert "psycopg" in {install.requirement_name(r) for r in install.reading_requirements("postgresql://h/db")}
    assert install.core_available()


def test_runtime_requirements_are_satisfied_by_the_tested_pins():
    """Slicer gets minimum versions (its Python is shared); the versions CI tests must satisfy them."""
    from packaging.requirements import Requirement

    shipped = install.shipped_constraints()
    assert shipped is not None and shipped.name == "constraints.txt"
    pins = {Requirement(line).name.lower(): Requirement(line) for line in install.constraint_lines(shipped.read_text())}
    for req in install.RUNTIME_REQUIREMENTS + install.POSTGRES_REQUIREMENTS:
        parsed = Requirement(req)
        assert parsed.name.lower() in pins, f"{req} has no tested pin in constraints.txt"
        (pinned,) = pins[parsed.name.lower()].specifier
        assert parsed.specifier.contains(pinned.version), f"{req} excludes the tested {pinned.version}"


def test_shipped_pins_are_passed_to_pip_except_slicers_and_installed_ones(tmp_path):
    """What is missing is installed at the tested version; Slicer's and installed packages keep theirs."""
    shipped = tmp_path / "constraints.txt"
    shipped.write_text("# tested\nnumpy==0.0.1\nSimpleITK==0.0.1\npytest==0.0.1\nno-such-package-lvp==1.2\n"
                       "--index-url https://example.invalid/simple\n")
    assert install.tested_pins(shipped) == ["no-such-package-lvp==1.2"]
    text = install.constraints_text(shipped=shipped)
    assert "no-such-package-lvp==1.2" in text.splitlines()
    assert "numpy==0.0.1" not in text and "pytest==0.0.1" not in text and "index-url" not in text
    # The real file: every pin it passes on is for a package not installed here.
    for line in install.tested_pins():
        assert install.installed_version(install.requirement_name(line)) is None, line


def test_restart_is_asked_for_packages_already_imported():
    import yaml  # noqa: F401 - imported, as another module of the application may have done

    assert install.imported_before(["PyYAML", "lvp-not-imported"]) == ["PyYAML"]


def test_missing_requirements_detects_absent_and_other_versions():
    assert install.missing_requirements(["pytest>=1", "no-such-package-lvp==1.0"]) == ["no-such-package-lvp==1.0"]
    assert install.missing_requirements(["pytest==0.0.1"]) == ["pytest==0.0.1"]  # another version: not satisfied
    assert install.missing_requirements(["numpy==0.0.1"]) == []  # Slicer's: never offered
    assert install.requirement_name("psycopg[binary]==3.3.9") == "psycopg"


def test_no_raw_reachability_probe_pip_decides():
    source = (MODULE_DIR / "LumbarVNetProLib" / "install.py").read_text()
    assert "socket" not in source and "check_online" not in source


def test_nothing_missing_runs_no_pip():
    class NoRunner:
        def start(self, *args, **kwargs):
            raise AssertionError("pip must not run when nothing is missing")

    assert install.install(NoRunner(), sys.executable, requirements=["pytest>=1", "numpy"]) == []


def test_offline_install_from_a_local_wheel_folder(tmp_path, monkeypatch):
    """LVP_WHEELS: pip reads only that folder (--no-index); a real pip resolves the wheel there."""
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    monkeypatch.setenv(install.WHEELS_ENV, str(wheels))
    runner = _Recording()
    assert install.install(runner, sys.executable, requirements=["lvp_test_pkg==1.0"], dryRun=True) == [
        "lvp_test_pkg==1.0"
    ]
    args = runner.calls[0]
    assert args[args.index("--find-links") + 1] == str(wheels) and "--no-index" in args
    assert "Would install lvp_test_pkg-1.0" in runner.out


def test_pip_failure_is_reported_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(install.WHEELS_ENV, str(tmp_path))  # an empty folder: offline, fails fast
    with pytest.raises(install.InstallError, match="pip install failed: .*no-such-package-lvp"):
        install.install(ProcessRunner(), sys.executable, requirements=["no-such-package-lvp==1.0"])


def test_install_works_in_a_private_folder_and_follows_no_planted_link(tmp_path, monkeypatch):
    """Issue 16 item 11: a predictable $TMPDIR/lvp-install let a planted link be overwritten."""
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(shared_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    planted = shared_tmp / "lvp-install"
    planted.mkdir()
    (planted / "slicer-constraints.txt").symlink_to(victim)
    (planted / "evil").symlink_to(victim)
    runner = _Recording()
    running, missing, work = install.start_install(runner, ["no-such-package-lvp==1.0"], sys.executable,
                                                   wheels=tmp_path, dryRun=True)
    running.wait()
    assert victim.read_text() == "precious\n"
    assert work != planted and work.parent == shared_tmp and work.name.startswith("lvp-install-")
    assert (work.stat().st_mode & 0o777) == 0o700
    constraints = work / "slicer-constraints.txt"
    assert not constraints.is_symlink()
    assert not [line for line in constraints.read_text().splitlines() if line.startswith("-")]
    # Writing through an existing name is refused, never followed.
    with pytest.raises(FileExistsError):
        install.write_private(planted / "evil", "x")
    assert victim.read_text() == "precious\n"


def test_site_constraints_never_pass_pip_options(tmp_path, monkeypatch):
    site = tmp_path / "site-constraints.txt"
    site.write_text("--index-url https://evil.example/simple\n-f https://evil.example\nscipy==1.17.1  # pinned\n")
    monkeypatch.setenv(install.CONSTRAINTS_ENV, str(site))
    text = install.constraints_text()
    assert "scipy==1.17.1" in text.splitlines()
    assert "evil" not in text and not [line for line in text.splitlines() if line.startswith("-")]


def test_torch_is_never_pip_installed():
    source = (MODULE_DIR / "LumbarVNetProLib" / "install.py").read_text()
    assert not re.search(r'"torch[=<>]', source)
    assert install.torch_status() in ("available", "extension", "missing")
    assert "PyTorch" in install.TORCH_MISSING


class _Recording(ProcessRunner):
    """Runs the command for real and keeps its arguments and stdout."""

    def __init__(self):
        self.calls, self._running = [], None

    def start(self, args, env=None, cwd=None):
        self.calls.append(list(args))
        self._running = super().start(args, env=env, cwd=cwd)
        return self._running

    @property
    def out(self):
        if self._running is None:
            return ""
        self._running.new_lines()
        return self._running.stdout_tail


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
