"""Dependencies by extra: ranges in pyproject.toml, the tested pins in one constraints.txt.

The Makefile, ``.ci/run`` and the Slicer installer read the same constraints file; every pin
there satisfies pyproject's ranges; the core (``lvp infer``) runs with none of the extras'
packages importable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO_ROOT / "constraints.txt"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
# Import names of the packages only extras bring (the core must run without them).
EXTRA_ONLY_IMPORTS = ("torch", "monai", "onnx", "sqlalchemy", "alembic", "psycopg", "sklearn", "matplotlib",
                      "dicomweb_client")


def _pins() -> dict[str, str]:
    pins = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.extras, f"not an exact pin: {line}"
            pins[req.name.lower()] = spec.version
    return pins


def _all_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("lumbarvnetpro")]
    return reqs


def test_every_dependency_is_a_range_with_a_tested_pin_inside_it():
    pins = _pins()
    for req in _all_requirements():
        assert not any(s.operator == "==" for s in req.specifier), f"{req}: a range in pyproject, pins in constraints"
        assert req.name.lower() in pins, f"{req.name} has no tested pin in constraints.txt"
        assert req.specifier.contains(pins[req.name.lower()], prereleases=True), f"{req} excludes the tested pin"
    assert pins["torch"] == "2.13.0"  # the CPU build CI installs


def test_extras_and_core_split():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"gpu", "train", "study", "postgres", "validate", "pacs", "test"} <= set(extras)
    core = {Requirement(r).name.lower() for r in PYPROJECT["project"]["dependencies"]}
    assert not core & {"torch", "monai", "sqlalchemy", "alembic", "psycopg", "scikit-learn", "matplotlib"}
    assert "lumbarvnetpro[all]" in extras["test"]


def test_one_version_source():
    import lvp

    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lvp.__version__"}
    assert lvp.__version__


def test_makefile_ci_and_slicer_installer_read_the_one_constraints_file():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "CONSTRAINTS" in makefile and "constraints.txt" in makefile
    assert makefile.count("-c $(CONSTRAINTS)") >= 2  # torch first, then the package and its extras
    assert "==" not in makefile, "a version pinned in the Makefile instead of constraints.txt"
    assert "PIP_CONSTRAINT" in (REPO_ROOT / ".ci" / "run").read_text()
    assert "constraints.txt" in (REPO_ROOT / "LumbarVNetPro" / "CMakeLists.txt").read_text()
    sys.path.insert(0, str(REPO_ROOT / "LumbarVNetPro"))
    from LumbarVNetProLib import install

    assert install.shipped_constraints() == CONSTRAINTS


def test_core_infer_runs_without_any_extra(tmp_path):
    """`lvp infer` on the sample with every extra-only package made unimportable."""
    blocker = tmp_path / "site" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text(textwrap.dedent(f"""\
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {EXTRA_ONLY_IMPORTS!r}:
                    raise ImportError(f"{{name}} is an extra's package, blocked for this test")
                return None
        sys.meta_path.insert(0, _Block())
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent), str(REPO_ROOT / "LumbarVNetPro")]),
               MPLBACKEND="Agg")
    sample = REPO_ROOT / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lvp", "infer", str(sample), "-o", str(out), "-q"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete" and report["model"]["runtime"] == "onnxruntime"
    assert (out / "report.html").is_file()
    probe = subprocess.run([sys.executable, "-c", "import sklearn"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked for this test" in probe.stderr  # the blocker itself works
