"""The extension as Slicer's build system packages it: configure, build, install, then read it.

The top-level ``CMakeLists.txt`` is configured with Slicer 5.12.3's own
``SlicerMacroBuildScriptedModule.cmake`` and generic-test template and CTK's
``ctkMacroCompilePythonScript.cmake`` (unmodified, from ``../shared/third_party``). Only what
``find_package(Slicer)`` would provide is stood in for: a ``SlicerConfig.cmake`` setting Slicer's
variables, and for the few Slicer CMake files that are not in ``third_party``
(``slicer_add_python_unittest``, the extension config and CPack includes) minimal versions that
record what they are given. Then the install tree, the package's content, is checked:

* it holds every file the module reads at run time (scripts, ``.ui``, icons, the bundled sample,
  the model and its catalogue, the core's package data), byte-identical to the source;
* from the install tree alone (a subprocess whose ``PYTHONPATH`` is the installed module folder,
  far from this checkout) the core's catalogue resolution and the module's lookup find the
  installed model and sample, the weights pass their sha256 check, and ``lvp demo`` runs;
* CTest has the module's self-test and Slicer's generic test registered as Slicer does;
* the extension's metadata and catalogue entry point at files that exist.

Skips cleanly when ``../shared/third_party``, ``cmake`` or a C/C++ compiler is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = Path(os.environ.get("LVP_SHARED_THIRD_PARTY", REPO_ROOT.parent / "shared" / "third_party"))
SLICER_SRC = THIRD_PARTY / "slicer-5.12.3"
CTK_CMAKE = THIRD_PARTY / "ctk" / "CMake"
SHARED_INSTALL_TREE_SCRIPT = REPO_ROOT.parent / "shared" / "tools" / "slicer_check" / "install_tree.sh"
SCRIPTED_DIR = "lib/Slicer-5.12/qt-scripted-modules"
RAW_URL = "https://raw.githubusercontent.com/lumbarvnetpro/LumbarVNetPro/main/"
# Data the core reads next to its modules, as pyproject.toml's package-data lists it.
PACKAGE_DATA_SUFFIXES = (".json", ".yaml", ".ini", ".mako", ".html", ".css")
# The package is downloaded by every user of the Extensions Manager: keep it small.
MAX_PACKAGE_BYTES = 25 * 1024 * 1024

REQUIRED_UPSTREAM = [
    SLICER_SRC / "CMake" / "SlicerMacroBuildScriptedModule.cmake",
    SLICER_SRC / "CMake" / "SlicerMacroConfigureGenericPythonModuleTests.cmake",
    SLICER_SRC / "Base" / "QTCore" / "Testing" / "Python" / "qSlicerModuleGenericTest.py.in",
    CTK_CMAKE / "ctkMacroCompilePythonScript.cmake",
    CTK_CMAKE / "ctkFunctionExtractOptimizedLibrary.cmake",
]


def _cmake_path(path: Path | str) -> str:
    return Path(path).as_posix()


def _write_slicer_standin(folder: Path) -> None:
    """A Slicer "package" whose config sets the variables and includes Slicer's real macros."""
    folder.mkdir(parents=True)
    (folder / "SlicerConfig.cmake").write_text(textwrap.dedent(f"""\
        # Stand-in for an installed Slicer 5.12.3's SlicerConfig.cmake: the variables an extension
        # build reads from it, nothing more.
        set(Slicer_VERSION_MAJOR 5)
        set(Slicer_VERSION_MINOR 12)
        set(Slicer_VERSION_PATCH 3)
        set(Slicer_USE_PYTHONQT ON)
        set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {SCRIPTED_DIR})
        set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR {SCRIPTED_DIR})
        set(Slicer_PYTHON_MODULE_TEST_TEMPLATES_DIR "{_cmake_path(SLICER_SRC / 'Base/QTCore/Testing/Python')}")
        set(Slicer_LAUNCHER_EXECUTABLE "{_cmake_path(folder / 'Slicer')}")
        set(CTK_CMAKE_DIR "{_cmake_path(CTK_CMAKE)}")
        set(PYTHON_EXECUTABLE "{_cmake_path(sys.executable)}")
        set(PYTHONINTERP_FOUND TRUE)
        set(PYTHONLIBS_FOUND TRUE)
        set(PYTHON_LIBRARY "{_cmake_path(folder / 'libpython-standin.so')}")
        set(PYTHON_LIBRARIES "${{PYTHON_LIBRARY}}")
        set(Slicer_USE_FILE "{_cmake_path(folder / 'UseSlicer.cmake')}")
        set(Slicer_EXTENSION_GENERATE_CONFIG "{_cmake_path(folder / 'SlicerExtensionGenerateConfig.cmake')}")
        set(Slicer_EXTENSION_CPACK "{_cmake_path(folder / 'SlicerExtensionCPack.cmake')}")
        """))
    (folder / "UseSlicer.cmake").write_text(textwrap.dedent(f"""\
        # Slicer's and CTK's own macros, unmodified.
        include(${{CTK_CMAKE_DIR}}/ctkFunctionExtractOptimizedLibrary.cmake)
        include(${{CTK_CMAKE_DIR}}/ctkMacroCompilePythonScript.cmake)
        include("{_cmake_path(SLICER_SRC / 'CMake/SlicerMacroConfigureGenericPythonModuleTests.cmake')}")
        include("{_cmake_path(SLICER_SRC / 'CMake/SlicerMacroBuildScriptedModule.cmake')}")
        if(BUILD_TESTING)
          enable_testing()
        endif()
        # SlicerMacroPythonTesting.cmake is not in third_party: this registers the test under the
        # same name and with the same launcher arguments as Slicer's macro does.
        macro(slicer_add_python_unittest)
          cmake_parse_arguments(MY "" "TESTNAME_PREFIX;SCRIPT" "SLICER_ARGS" ${{ARGN}})
          get_filename_component(test_name ${{MY_SCRIPT}} NAME_WE)
          add_test(NAME py_${{MY_TESTNAME_PREFIX}}${{test_name}}
            COMMAND ${{Slicer_LAUNCHER_EXECUTABLE}} --no-splash --testing
              --additional-module-paths ${{CMAKE_BINARY_DIR}}/${{Slicer_QTSCRIPTEDMODULES_LIB_DIR}}
              ${{MY_SLICER_ARGS}}
              --python-code "import slicer.testing; slicer.testing.runUnitTest(${{_dirs}}, '${{test_name}}')")
        endmacro()
        """).replace("${_dirs}", "['${CMAKE_CURRENT_BINARY_DIR}', '${CMAKE_CURRENT_SOURCE_DIR}']"))
    # CTest lists a test's command only when its executable exists: a launcher that says why it
    # cannot run the in-Slicer tests here.
    launcher = folder / "Slicer"
    launcher.write_text("#!/bin/sh\necho 'stand-in for the Slicer launcher: run these tests in Slicer' >&2\nexit 1\n")
    launcher.chmod(0o755)
    (folder / "SlicerExtensionGenerateConfig.cmake").write_text(textwrap.dedent("""\
        # Records the extension's metadata, which Slicer turns into its .s4ext description.
        set(_file ${CMAKE_BINARY_DIR}/extension-metadata.json)
        file(WRITE ${_file} "{\\n  \\"PROJECT_NAME\\": \\"${PROJECT_NAME}\\"")
        foreach(_key HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)
          file(APPEND ${_file} ",\\n  \\"${_key}\\": \\"${EXTENSION_${_key}}\\"")
        endforeach()
        file(APPEND ${_file} "\\n}\\n")
        """))
    (folder / "SlicerExtensionCPack.cmake").write_text("# CPack packs what `install` installs.\n")


def _has_compilers() -> bool:
    return any(shutil.which(c) for c in ("cc", "gcc", "clang")) and any(
        shutil.which(c) for c in ("c++", "g++", "clang++"))


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def extension(tmp_path_factory) -> dict[str, Path]:
    """The extension configured, built and installed; paths of the build and install trees."""
    missing = [str(p) for p in REQUIRED_UPSTREAM if not p.is_file()]
    if missing:
        pytest.skip(f"Slicer/CTK CMake sources not found ({missing[0]}); needs ../shared/third_party")
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if not _has_compilers():
        pytest.skip("no C/C++ compiler: the extension's project() enables C and CXX as Slicer's template does")
    generator = "Unix Makefiles" if shutil.which("make") else "Ninja" if shutil.which("ninja") else None
    if generator is None:
        pytest.skip("neither make nor ninja is installed")
    work = tmp_path_factory.mktemp("extension")
    source, standin, build, install = work / "source", work / "Slicer-standin", work / "build", work / "install"
    _snapshot_sources(source)
    _write_slicer_standin(standin)
    _run(["cmake", "-S", str(source), "-B", str(build), "-G", generator, f"-DSlicer_DIR={standin}",
          "-DBUILD_TESTING=ON", f"-DCMAKE_INSTALL_PREFIX={install}", f"-DLVP_TEST_PYTHON={sys.executable}"], work)
    _run(["cmake", "--build", str(build)], work)
    _run(["cmake", "--install", str(build)], work)
    return {"source": source, "build": build, "install": install, "modules": install / SCRIPTED_DIR}


def _snapshot_sources(dest: Path) -> None:
    """Copy what the CMake build reads, so the checks compare against the very files built."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("CMakeLists.txt", "LumbarVNetPro", "Resources", "models", "Testing", "constraints.txt"):
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _runtime_files(root: Path) -> set[str]:
    """Every file the module and the core read at run time, as paths relative to the module folder.

    Taken from the source tree at ``root``, so a file added later is expected in the package too.
    """
    module_source = root / "LumbarVNetPro"
    files = {"LumbarVNetPro.py"}
    files |= {p.relative_to(module_source).as_posix() for p in (module_source / "LumbarVNetProLib").rglob("*.py")
              if "__pycache__" not in p.parts}
    for path in (module_source / "lvp").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and (
                path.suffix == ".py" or path.name.endswith(PACKAGE_DATA_SUFFIXES)):
            files.add(path.relative_to(module_source).as_posix())
    resources = root / "Resources"
    files |= {p.relative_to(root).as_posix() for p in resources.glob("UI/*.ui")}
    files |= {p.relative_to(root).as_posix() for p in resources.glob("Icons/*.png")}
    files |= {p.relative_to(root).as_posix() for p in (resources / "Sample").iterdir() if p.is_file()}
    catalog = json.loads((root / "models" / "models.json").read_text())
    files.add("models/models.json")
    files.add("constraints.txt")  # the tested pins, read by LumbarVNetProLib.install
    files |= {f"models/{f['path']}" for m in catalog["models"] for f in m["files"].values()}
    return files


def _source_of(root: Path, relative: str) -> Path:
    first = relative.split("/")[0]
    return root / relative if first in ("Resources", "models", "constraints.txt") else root / "LumbarVNetPro" / relative


def test_install_tree_holds_every_runtime_file(extension):
    modules, source = extension["modules"], extension["source"]
    expected = _runtime_files(source)
    # The kinds of file the issue names are all among them (guards the expectation itself).
    for pattern in (r"^Resources/UI/LumbarVNetPro\.ui$", r"^Resources/Icons/.+\.png$", r"^models/.+\.onnx$",
                    r"^models/models\.json$", r"^Resources/Sample/spider_sample_t2\.nii\.gz$",
                    r"^lvp/grading_calibration\.json$", r"^lvp/readingdb/migrations/script\.py\.mako$",
                    r"^lvp/readingdb/migrations/versions/0001_initial\.py$"):
        assert any(re.match(pattern, f) for f in expected), pattern
    missing = sorted(f for f in expected if not (modules / f).is_file())
    assert not missing, f"not installed: {missing}"
    changed = sorted(f for f in expected if (modules / f).read_bytes() != _source_of(source, f).read_bytes())
    assert not changed, f"installed copies differ from the source: {changed}"


def test_every_core_data_file_is_of_a_shipped_kind(extension):
    """A data file of another kind in lvp/ would be neither in the wheel nor in the extension."""
    source = extension["source"] / "LumbarVNetPro" / "lvp"
    others = sorted(p.relative_to(source).as_posix() for p in source.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"
                    and not p.name.endswith(PACKAGE_DATA_SUFFIXES))
    assert not others, f"lvp data files of a kind neither pyproject.toml nor CMake ships: {others}"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^"\*" = \[(.*)\]$', pyproject, re.M)
    assert declared, "pyproject.toml's [tool.setuptools.package-data] line changed"
    assert set(re.findall(r'"\*(\.\w+)"', declared.group(1))) == set(PACKAGE_DATA_SUFFIXES)


def test_nothing_is_left_outside_the_installed_module_folder(extension):
    """The defect: resources copied above the module folder, where nothing installs them."""
    install, build = extension["install"], extension["build"]
    outside = [p for p in install.rglob("*") if p.is_file() and SCRIPTED_DIR not in p.as_posix()]
    assert not outside, outside
    scripted_parent = (build / SCRIPTED_DIR).parent
    strays = [p.name for p in scripted_parent.iterdir() if p.name != Path(SCRIPTED_DIR).name]
    assert not strays, f"copied beside qt-scripted-modules in the build tree, so never installed: {strays}"


def test_package_size_stays_reasonable(extension):
    modules = extension["modules"]
    sizes = {p.relative_to(modules).as_posix(): p.stat().st_size for p in modules.rglob("*") if p.is_file()}
    total = sum(sizes.values())
    assert total <= MAX_PACKAGE_BYTES, f"{total / 2**20:.1f} MiB installed"
    # Only the files the module reads, their byte-compiled twins and the model card are shipped.
    expected = _runtime_files(extension["source"]) | {"models/MODEL_CARD.md"}
    extra = sorted(f for f in sizes if f not in expected and not (f.endswith(".pyc") and f[:-1] in expected))
    assert not extra, f"installed but not needed at run time: {extra}"


def test_model_and_sample_resolved_from_the_install_tree_alone(extension, tmp_path):
    modules = extension["modules"]
    code = textwrap.dedent("""\
        import json
        import lvp
        from lvp import model_catalog
        from lvp.commands.demo import sample_path
        from LumbarVNetProLib.models import bundled_model_dir, verify_model_folder
        entry = model_catalog.get_model()
        verified = verify_model_folder()
        print(json.dumps({
            "lvp": lvp.__file__,
            "core_folder": str(entry.folder),
            "weights": {kind: str(entry.file(kind)) for kind in entry.data["files"]},
            "module_folder": str(bundled_model_dir()),
            "verified": verified.name,
            "default_name": model_catalog.load_catalog()["default"],
            "sample": str(sample_path()),
        }))
        """)
    env = {k: v for k, v in os.environ.items() if k not in ("LVP_MODEL_DIR", "LVP_SAMPLE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(modules)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["lvp"]).resolve().is_relative_to(modules.resolve()), found["lvp"]
    assert Path(found["core_folder"]).resolve() == (modules / "models").resolve()
    assert Path(found["module_folder"]).resolve() == (modules / "models").resolve()
    assert found["verified"] == found["default_name"]
    catalog = json.loads((extension["source"] / "models" / "models.json").read_text())
    default = next(m for m in catalog["models"] if m["name"] == catalog["default"])
    assert set(found["weights"]) == set(default["files"])  # every listed weight file passed sha256
    for path in found["weights"].values():
        assert Path(path).resolve().is_relative_to(modules.resolve())
    assert Path(found["sample"]).resolve() == (modules / "Resources/Sample/spider_sample_t2.nii.gz").resolve()


@pytest.mark.slow
def test_lvp_demo_runs_from_the_install_tree_alone(extension, tmp_path):
    """The core, its data, the model and the sample as installed: a whole run, writing nothing there."""
    modules = extension["modules"]
    before = sorted(p.relative_to(modules).as_posix() for p in modules.rglob("*"))
    env = {k: v for k, v in os.environ.items() if k not in ("LVP_MODEL_DIR", "LVP_SAMPLE", "PYTHONPATH")}
    env.update(PYTHONPATH=str(modules), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lvp", "demo", "-o", str(out), "--device", "cpu"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"
    assert Path(report["input"]["path"]).resolve() == (modules / "Resources/Sample/spider_sample_t2.nii.gz").resolve()
    catalog = json.loads((modules / "models" / "models.json").read_text())
    default = next(m for m in catalog["models"] if m["name"] == catalog["default"])
    assert report["model"]["sha256"] == default["files"]["onnx"]["sha256"]
    assert report["levels"], "no level was found on the sample"
    assert sorted(p.relative_to(modules).as_posix() for p in modules.rglob("*")) == before


def test_install_tree_without_the_model_names_where_it_looked(extension, tmp_path):
    """A package that lost its model is refused with the places searched, not a bare traceback."""
    copy = tmp_path / "qt-scripted-modules"
    shutil.copytree(extension["modules"] / "lvp", copy / "lvp")
    code = "from lvp import model_catalog; model_catalog.get_model()"
    env = {k: v for k, v in os.environ.items() if k not in ("LVP_MODEL_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(copy)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "ModelError" in proc.stderr and str(copy / "models") in proc.stderr, proc.stderr


def test_ctest_registers_the_self_test_and_the_generic_test(extension):
    build = extension["build"]
    proc = _run(["ctest", "--show-only=json-v1"], build, timeout=60)
    tests = {t["name"]: t for t in json.loads(proc.stdout)["tests"]}
    self_test = tests["py_LumbarVNetPro"]["command"]
    assert "--testing" in self_test
    # Slicer runs LumbarVNetProTest from the module's build and source folders.
    module_build = (build / "LumbarVNetPro").as_posix()
    assert any("runUnitTest" in arg and module_build in arg and "'LumbarVNetPro'" in arg for arg in self_test)
    generic = tests["py_nomainwindow_qSlicerLumbarVNetProModuleGenericTest"]["command"]
    assert "--no-main-window" in generic
    script = build / "LumbarVNetPro" / "qSlicerLumbarVNetProModuleGenericTest.py"
    assert "LumbarVNetPro" in script.read_text()
    # With a test Python named, each of the project's pytest files is a CTest test too.
    this_file = Path(__file__).stem
    assert f"lvp_{this_file}" in tests
    assert {f"lvp_{p.stem}" for p in (extension["source"] / "Testing" / "Python").glob("test_*.py")} <= set(tests)


def _declared_metadata() -> dict[str, str]:
    """The top-level CMakeLists.txt's ``set(EXTENSION_<KEY> "...")`` values."""
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    return {key: value for key, value in re.findall(r'^set\(EXTENSION_(\w+) "([^"]*)"\)', text, re.M)}


def test_extension_metadata_as_the_build_sees_it(extension):
    meta = json.loads((extension["build"] / "extension-metadata.json").read_text())
    assert meta["PROJECT_NAME"] == "LumbarVNetPro"
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert meta[key].strip(), key
    assert meta["DEPENDS"] == "NA"
    declared = _declared_metadata()
    assert {key: meta[key] for key in declared if key in meta} == declared


def test_icon_screenshots_and_catalog_entry():
    meta = _declared_metadata()
    # Icon and screenshots are raw URLs of files in this repository, which exist and are PNGs.
    urls = [meta["ICONURL"], *meta["SCREENSHOTURLS"].split()]
    assert len(urls) >= 2
    for url in urls:
        assert url.startswith(RAW_URL), url
        local = REPO_ROOT / url[len(RAW_URL):]
        assert local.is_file(), f"{url} points at {local}, which does not exist"
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", local
    # The Extensions Index entry (schema v1.0.2: required keys, no others, right types).
    entry = json.loads((REPO_ROOT / "LumbarVNetPro.json").read_text())
    allowed = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
               "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
               "enabled": bool, "tier": int}
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= set(allowed), set(entry) - set(allowed)
    for key, value in entry.items():
        assert isinstance(value, allowed[key]), key
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == meta["CATEGORY"]
    assert entry["scm_url"].removesuffix(".git") == meta["HOMEPAGE"]
    assert 1 <= entry.get("tier", 1) <= 5
    # The build dependencies are the extensions CMake depends on ("NA": none).
    assert entry.get("build_dependencies", []) == ([] if meta["DEPENDS"] == "NA" else meta["DEPENDS"].split(";"))


def test_license_is_the_one_pyproject_declares():
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert 'license = { text = "Apache-2.0" }' in (REPO_ROOT / "pyproject.toml").read_text()


def test_shared_install_tree_check_lists_the_runtime_files():
    """The shared cross-check script, run on this checkout, lists what the issue says was missing."""
    if not SHARED_INSTALL_TREE_SCRIPT.is_file() or shutil.which("cmake") is None or shutil.which("bash") is None:
        pytest.skip("../shared/tools/slicer_check/install_tree.sh or cmake not available")
    proc = subprocess.run(["bash", str(SHARED_INSTALL_TREE_SCRIPT), str(REPO_ROOT), str(REPO_ROOT.parent / "shared")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = set(proc.stdout.split())
    assert "Resources/UI/LumbarVNetPro.ui" in listed
    assert any(re.fullmatch(r"Resources/Icons/[^/]+\.png", f) for f in listed)
    assert any(re.fullmatch(r"models/[^/]+\.onnx", f) for f in listed)
    assert "models/models.json" in listed
