"""Slicer 5.12.3's own Python on top of slicer-core: the fixture of the module-level Slicer tests.

Loads, by path from ``../shared/third_party/slicer-5.12.3/Base/Python/slicer``, the unmodified
``i18n``, ``util``, ``ScriptedLoadableModule``, ``packaging`` and ``parameterNodeWrapper`` that
every scripted module runs on in Slicer 5.12, over the real MRML of the ``slicer-core`` wheel.
Only ``qt`` and ``ctk`` (:mod:`qt_fakes`), the few Qt-based ``slicer.q*`` widget classes the
.ui names, and ``slicer.app`` (:class:`FakeApp`) are stand-ins. So the module's base classes,
its parameter node, ``slicer.util``'s helpers (``loadUI``, ``childWidgetVariables``,
``VTKObservationMixin``, message boxes in testing mode) are Slicer's own code.

Tests skip cleanly when ``../shared`` is absent (``LVP_SHARED`` overrides its location).
PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest
import qt_fakes

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "LumbarVNetPro"
SHARED = Path(os.environ.get("LVP_SHARED") or REPO_ROOT.parent / "shared")
SLICER_PYTHON = SHARED / "third_party" / "slicer-5.12.3" / "Base" / "Python" / "slicer"

_loaded: dict = {}


class FakeModuleManager(qt_fakes.QObject):
    SIGNALS = ("moduleAboutToBeUnloaded",)


class FakeIOManager:
    """``slicer.app.coreIOManager()`` for volume files: MRML's own archetype storage node reads them."""

    def fileType(self, filename) -> str:
        return "VolumeFile"

    def loadNodes(self, filetype, properties, loadedNodes, userMessages) -> bool:
        import slicer

        if filetype != "VolumeFile":
            return False
        path = Path(properties["fileName"])
        scene = slicer.mrmlScene
        name = properties.get("name") or path.name.split(".")[0]
        volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        if not storage.ReadData(volume):
            scene.RemoveNode(volume)
            scene.RemoveNode(storage)
            userMessages.AddMessage(0, f"cannot read {path}")
            return False
        volume.SetAndObserveStorageNodeID(storage.GetID())
        volume.CreateDefaultDisplayNodes()
        loadedNodes.AddItem(volume)
        return True


class FakeApp(qt_fakes.QObject):
    """``slicer.app``: testing mode, a temporary folder and an event loop that fires the timers."""

    def __init__(self) -> None:
        super().__init__()
        self.testing = True
        self.applicationName = "Slicer"
        self.temporaryPath = tempfile.mkdtemp(prefix="lvp-slicer-app-")
        self._moduleManager = FakeModuleManager()
        self._io = FakeIOManager()

    def coreIOManager(self):
        return self._io

    def testingEnabled(self) -> bool:
        return self.testing

    def translate(self, context: str, text: str) -> str:
        return text  # no translation catalogue loaded: the source text, as Slicer shows it in English

    def moduleManager(self):
        return self._moduleManager

    def processEvents(self) -> None:
        """One turn of the event loop: queued single-shot callbacks, then every running timer."""
        pending, qt_fakes.QTimer._pending[:] = list(qt_fakes.QTimer._pending), []
        for callback in pending:
            callback()
        for timer in list(qt_fakes.QTimer._active):
            timer.fire()

    def setOverrideCursor(self, cursor) -> None:
        qt_fakes.QApplication.setOverrideCursor(cursor)

    def restoreOverrideCursor(self) -> None:
        qt_fakes.QApplication.restoreOverrideCursor()

    def userSettings(self):
        return qt_fakes.QSettings()

    def settings(self):
        return qt_fakes.QSettings()

    def thread(self):
        return "main"

    def layoutManager(self):
        return None

    def topLevelWidgets(self) -> list:
        return []


class qMRMLWidget(qt_fakes.QWidget):  # noqa: N801 - Slicer's class name
    pass


class qSlicerWidget(qMRMLWidget):  # noqa: N801
    pass


class qMRMLNodeComboBox(qt_fakes.QWidget):  # noqa: N801
    """A node selector: the current node of its scene, ``currentNodeChanged`` when it changes."""

    SIGNALS = ("currentNodeChanged", "currentNodeIDChanged")
    _mrml_aware = True

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.nodeTypes = []
        self.mrmlScene = None
        self._node = None
        self.noneEnabled = False

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene

    def currentNode(self):
        if self._node is not None and self._node.GetScene() is None:
            self._node = None  # removed from the scene: Qt's selector drops it too
        return self._node

    def setCurrentNode(self, node) -> None:
        """Select ``node``, as a click in the list does (a disabled selector is set by code only)."""
        if node is not self._node:
            self._node = node
            self._emit("currentNodeChanged", node)


class qMRMLSegmentEditorWidget(qt_fakes.QWidget):  # noqa: N801
    """The embedded Segment Editor: its nodes, active effect, keyboard shortcuts and view observations."""

    _mrml_aware = True

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._editorNode = self._segmentation = self._source = None
        self.activeEffectName = ""
        self.keyboardShortcutsInstalled = False
        self.viewsObserved = False

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene

    def setMRMLSegmentEditorNode(self, node) -> None:
        self._editorNode = node

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node) -> None:
        self._segmentation = node
        self.viewsObserved = True  # the editor observes the slice views once it edits a segmentation

    def segmentationNode(self):
        return self._segmentation

    def setSourceVolumeNode(self, node) -> None:
        self._source = node

    def sourceVolumeNode(self):
        return self._source

    def setActiveEffectByName(self, name: str) -> None:
        self.activeEffectName = name

    def setActiveEffect(self, effect) -> None:
        self.activeEffectName = "" if effect is None else str(effect)

    def activeEffect(self):
        return self.activeEffectName or None

    def installKeyboardShortcuts(self, parent=None) -> None:
        self.keyboardShortcutsInstalled = True

    def uninstallKeyboardShortcuts(self) -> None:
        self.keyboardShortcutsInstalled = False

    def setupViewObservations(self) -> None:
        self.viewsObserved = True

    def removeViewObservations(self) -> None:
        self.viewsObserved = False


class qSlicerScriptedLoadableModule(qt_fakes.QObject):  # noqa: N801
    """The module's ``parent``: what Slicer's module factory passes to ``ScriptedLoadableModule``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.isEntered = False
        self.title = ""
        self.icon = None


def _load(name: str, path: Path, package: bool = False):
    import slicer

    if package:
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    setattr(slicer, name.rsplit(".", 1)[-1], module)
    spec.loader.exec_module(module)
    return module


def load_slicer_application():
    """Install qt/ctk stand-ins and Slicer 5.12.3's Python once per process; returns ``slicer``.

    ``pytest.skip`` when the third-party sources are not there.
    """
    if "slicer" in _loaded:
        return _loaded["slicer"]
    if not (SLICER_PYTHON / "ScriptedLoadableModule.py").is_file():
        pytest.skip(f"Slicer 5.12.3 sources not found at {SLICER_PYTHON} (../shared/third_party)")
    import slicer

    qt, ctk = qt_fakes.make_modules()
    sys.modules["qt"], sys.modules["ctk"] = qt, ctk
    for klass in (qMRMLWidget, qSlicerWidget, qMRMLNodeComboBox, qMRMLSegmentEditorWidget):
        setattr(slicer, klass.__name__, klass)
    for name in ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget", "qMRMLScreenShotDialog", "qMRMLUtils"):
        setattr(slicer, name, type(name, (qt_fakes.QWidget,), {}))
    qt_fakes.WIDGET_CLASSES.update(
        {name: getattr(qt, name) for name in dir(qt) if name.startswith("Q") and isinstance(getattr(qt, name), type)}
    )
    qt_fakes.WIDGET_CLASSES.update({name: getattr(ctk, name) for name in dir(ctk) if name.startswith("ctk")})
    qt_fakes.WIDGET_CLASSES.update({"qMRMLWidget": qMRMLWidget, "qMRMLNodeComboBox": qMRMLNodeComboBox,
                                    "qMRMLSegmentEditorWidget": qMRMLSegmentEditorWidget})
    slicer.app = FakeApp()
    slicer.mrmlScene = slicer.vtkMRMLScene()
    _load("slicer.i18n", SLICER_PYTHON / "i18n.py")
    _load("slicer.util", SLICER_PYTHON / "util.py")
    _load("slicer.ScriptedLoadableModule", SLICER_PYTHON / "ScriptedLoadableModule.py")
    _load("slicer.packaging", SLICER_PYTHON / "packaging.py")
    wrapper = _load("slicer.parameterNodeWrapper", SLICER_PYTHON / "parameterNodeWrapper", package=True)
    for name in ("parameterNodeWrapper", "parameterPack", "Choice", "Default"):
        setattr(slicer, name, getattr(wrapper, name))
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    _loaded["slicer"] = slicer
    return slicer


def new_scene(slicer):
    """A fresh ``slicer.mrmlScene`` (the application's scene of one test)."""
    slicer.mrmlScene = slicer.vtkMRMLScene()
    qt_fakes.QTimer._active.clear()
    qt_fakes.QTimer._pending.clear()
    qt_fakes.QMessageBox.answers.clear()
    qt_fakes.QMessageBox.shown.clear()
    qt_fakes.QSettings._store.clear()
    slicer.app.testing = True
    return slicer.mrmlScene


def module_parent():
    """The ``parent`` Slicer passes to the module class."""
    return qSlicerScriptedLoadableModule(str(MODULE_DIR / "LumbarVNetPro.py"))


def make_widget(module):  # the imported LumbarVNetPro module
    """The module widget as Slicer builds it: a qMRMLWidget panel with a layout, then ``setup()``."""
    panel = qMRMLWidget()
    panel.setLayout(qt_fakes.QVBoxLayout())
    panel.isEntered = True
    widget = module.LumbarVNetProWidget(panel)
    widget.setup()
    return widget


def wait_idle(slicer, widget, timeout_s: float = 60.0) -> None:
    """Run the event loop until the panel's job is over (the self-test's wait: cancelled on a timeout)."""
    from LumbarVNetProLib.selftest import wait_panel

    wait_panel(widget, slicer.app.processEvents, timeout_s, "the panel's job")


@pytest.fixture()
def slicer_app():
    """Slicer's Python on slicer-core with a fresh application scene; yields ``slicer``."""
    slicer = load_slicer_application()
    new_scene(slicer)
    yield slicer
    qt_fakes.QTimer._active.clear()
