"""The scripted module file: .ui widget names, resources, CMake lists, settings.

The module itself is imported on Slicer 5.12.3's real base classes (the ``slicer_app``
fixture); test_slicer_base_classes.py drives its widget.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from slicer_helpers import MODULE_DIR, REPO_ROOT, slicer

pytest_plugins = ("slicer_app",)

UI_FILE = REPO_ROOT / "Resources" / "UI" / "LumbarVNetPro.ui"


def _ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def test_module_has_no_stand_in_base_classes():
    """Stand-ins for Slicer's base classes hid a TypeError in setup() (issue 9): none may come back."""
    source = (MODULE_DIR / "LumbarVNetPro.py").read_text()
    assert "HAVE_QT" not in source and "except ImportError" not in source
    assert "class ScriptedLoadableModuleLogic" not in source and "class VTKObservationMixin" not in source
    params = (MODULE_DIR / "LumbarVNetProLib" / "parameters.py").read_text()
    assert "def parameterNodeWrapper" not in params and "HAVE_WRAPPER" not in params


def test_every_ui_name_used_by_the_module_exists():
    source = (MODULE_DIR / "LumbarVNetPro.py").read_text()
    used = set(re.findall(r"self\.ui\.([A-Za-z_]\w*)", source))
    assert {"applyButton", "cancelButton", "gradeTableWidget", "submitButton"} <= used
    missing = used - set(_ui_widgets())
    assert not missing, f"widgets used by LumbarVNetPro.py but absent from the .ui: {sorted(missing)}"


def test_ui_binds_every_parameter_that_has_a_control():
    from LumbarVNetProLib.parameters import Settings as LumbarVNetProParameterNode

    bound = {}
    for name, w in _ui_widgets().items():
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = name
    fields = set(LumbarVNetProParameterNode.__annotations__)
    assert set(bound) <= fields, f"unknown parameters in the .ui: {set(bound) - fields}"
    # Every user setting has a control; device is bound by hand (labels vs keys), node outputs are set by code.
    assert fields - set(bound) == {"device", "segmentation", "levelLabels", "gradeTable"}


def test_resources_are_found_from_source_tree_and_install_layout(tmp_path, slicer_app):
    import LumbarVNetPro

    assert LumbarVNetPro.findResource("UI/LumbarVNetPro.ui") == UI_FILE
    # Installed: qt-scripted-modules/LumbarVNetPro.py with Resources/ beside it.
    installed = tmp_path / "qt-scripted-modules"
    (installed / "Resources" / "UI").mkdir(parents=True)
    (installed / "Resources" / "UI" / "LumbarVNetPro.ui").write_text("<ui/>")
    assert LumbarVNetPro.findResource("UI/LumbarVNetPro.ui", installed) == installed / "Resources/UI/LumbarVNetPro.ui"
    icon = LumbarVNetPro.findResource("Icons/LumbarVNetPro.png")
    assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cmake_lists_every_script_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "LumbarVNetPro")
    assert "LumbarVNetProLib/*.py" in cmake  # every library file (installed: test_slicer_install_tree.py)
    # A "../" resource is copied above the module folder and never installed (issue 9); the
    # install tree itself is checked in test_slicer_install_tree.py.
    assert not re.findall(r"^\s+\.\./\S+$", cmake, re.M)
    assert "slicer_add_python_unittest(SCRIPT LumbarVNetPro.py)" in cmake
    # The bundled model ships with the module: the catalogue and every weight file it lists.
    import json

    catalog = json.loads((REPO_ROOT / "models" / "models.json").read_text())
    files = {"models.json"} | {f["path"] for m in catalog["models"] for f in m["files"].values()}
    listed = set(re.findall(r"^\s+models/(\S+)$", cmake, re.M))
    assert files <= listed


def test_model_folder_found_from_source_tree_and_install_layout(tmp_path):
    from LumbarVNetProLib.models import bundled_model_dir

    assert bundled_model_dir(MODULE_DIR) == REPO_ROOT / "models"
    for where in ("beside", "above"):
        installed = tmp_path / where / "qt-scripted-modules"
        models = installed / "models" if where == "beside" else installed.parent / "models"
        models.mkdir(parents=True)
        (models / "models.json").write_text("{}")
        assert bundled_model_dir(installed) == models
    assert bundled_model_dir(tmp_path / "nowhere") is None


def test_self_test_drives_the_widget_through_the_shared_flow():
    """The in-Slicer self-test builds the widget and logic and runs the flow the pytest suite runs."""
    source = (MODULE_DIR / "LumbarVNetPro.py").read_text()
    test_source = source[source.index("class LumbarVNetProTest") :]
    assert "widget_flow(" in test_source and "LumbarVNetProWidget()" in test_source
    assert "build_reference_result" not in test_source
    # Nothing imports the reading database (SQLAlchemy) before the flow has checked it is installed.
    assert "readingdb" not in test_source


def test_parameters_defaults_and_validation(tmp_path):
    from LumbarVNetProLib.parameters import Settings as LumbarVNetProParameterNode
    from LumbarVNetProLib.parameters import validate

    params = LumbarVNetProParameterNode()
    assert params.device == "auto" and params.modelSource == "catalog" and params.showScanPlanes is False
    # No model-name setting: another model is chosen as an offline folder (lvp infer --model DIR).
    assert not hasattr(params, "modelName") and "modelName" not in LumbarVNetProParameterNode.__annotations__
    assert any("input volume" in p for p in validate(params))
    scene = slicer.vtkMRMLScene()
    params.inputVolume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    assert validate(params) == []
    params.modelSource, params.device = "folder", "gpu"
    problems = validate(params)
    assert any("offline model folder" in p for p in problems) and any("gpu" in p for p in problems)
    params.modelFolder, params.device = tmp_path, "cuda"
    assert validate(params) == []


def test_widget_is_thin_glue():
    """The widget calls the Qt-free workflow; no core, child-process or reading-database code in it."""
    source = (MODULE_DIR / "LumbarVNetPro.py").read_text()
    widget = source[source.index("class LumbarVNetProWidget") : source.index("class LumbarVNetProTest")]
    assert "self.workplace = workflow.Workplace(self.logic.case)" in widget
    for forbidden in ("from lvp", "import lvp", "ReadingDB", "ReadingSession", "startInference", "finishInference",
                      "mkdtemp", "rows_from_report", "apply_recompute", "time.strftime", ".running."):
        assert forbidden not in widget, forbidden
