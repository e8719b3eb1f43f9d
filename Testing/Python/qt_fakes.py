"""Minimal, honest stand-ins for the ``qt`` and ``ctk`` modules (PythonQt), for the Slicer tests.

Slicer's own Python (``ScriptedLoadableModule``, ``util``, ``parameterNodeWrapper``, from
``../shared/third_party``) runs on top of these; only what a Qt widget *is* is imitated here:
objects with a parent and children, named properties, signals that call their slots (both the
PythonQt ``widget.connect("clicked(bool)", slot)`` and ``widget.clicked.connect(slot)`` forms),
and the state each widget type keeps (text, checked, items, current index, table cells). As in
PythonQt, a Qt *property* is an attribute, not a method, even where C++ has a getter of that
name (``table.rowCount``, ``combo.count``, ``list.currentRow``): code calling ``rowCount()``
fails here as it would in Slicer. Nothing
answers for the module: a slot the module connects runs only when the signal is emitted, a value
set in a widget is only what the module (or a test acting as the user) put there.

``QUiLoader`` builds the widget tree from the real ``.ui`` file (class names, object names and
the ``SlicerParameterName`` / ``text`` / ``checked`` properties), so the module's own .ui is what
the tests exercise.
"""

# ruff: noqa: N801
from __future__ import annotations

import types
import xml.etree.ElementTree as ET
from pathlib import Path

# --------------------------------------------------------------------------- signals


class Signal:
    """A bound signal: ``connect`` / ``disconnect`` / ``emit`` (what PythonQt offers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.slots: list = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def disconnect(self, slot=None) -> None:
        if slot is None:
            self.slots.clear()
        elif slot in self.slots:
            self.slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            _call(slot, args)


def _call(slot, args):
    """Call ``slot`` with as many of ``args`` as it takes (Qt drops extra signal arguments)."""
    import inspect

    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return slot(*args)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return slot(*args)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return slot(*args[: len(positional)])


class QObject:
    SIGNALS: tuple[str, ...] = ("destroyed",)

    def __init__(self, parent=None) -> None:
        object.__setattr__(self, "_signals", {})
        self._children: list = []
        self._properties: dict = {}
        self._parent = None
        self.name = ""
        self.objectName = ""
        if isinstance(parent, QObject):
            self.setParent(parent)

    def __getattr__(self, name):
        # Signals are created on first use, for every name the class declares (its ancestors too).
        if not name.startswith("_"):
            for klass in type(self).__mro__:
                if name in getattr(klass, "SIGNALS", ()):
                    signals = object.__getattribute__(self, "_signals")
                    return signals.setdefault(name, Signal(name))
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def connect(self, signature, slot) -> bool:
        getattr(self, str(signature).split("(")[0]).connect(slot)
        return True

    def disconnect(self, signature, slot=None) -> bool:
        getattr(self, str(signature).split("(")[0]).disconnect(slot)
        return True

    def setParent(self, parent) -> None:
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self) -> list:
        return list(self._children)

    def findChildren(self, klass=None) -> list:
        found = []
        for child in self._children:
            if klass is None or isinstance(child, klass):
                found.append(child)
            found.extend(child.findChildren(klass))
        return found

    def setProperty(self, name: str, value) -> None:
        self._properties[name] = value

    def property(self, name: str):
        return self._properties.get(name)

    def setObjectName(self, name: str) -> None:
        self.name = self.objectName = name

    def className(self) -> str:
        return type(self).__name__

    def deleteLater(self) -> None:
        pass

    def blockSignals(self, block: bool) -> bool:
        previous = getattr(self, "_blocked", False)
        self._blocked = block
        return previous

    def _emit(self, name: str, *args) -> None:
        if not getattr(self, "_blocked", False):
            getattr(self, name).emit(*args)


# --------------------------------------------------------------------------- widgets


def _notifying(attr: str, signal: str) -> property:
    """A property stored in ``attr`` whose change emits ``signal`` with the new value (Qt's NOTIFY)."""

    def get(self):
        return getattr(self, attr)

    def set_(self, value) -> None:
        if value != getattr(self, attr):
            setattr(self, attr, value)
            self._emit(signal, value)

    return property(get, set_)


class QWidget(QObject):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self._layout = None
        self._actions: list = []

    def isWidgetType(self) -> bool:
        return True

    def setEnabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def isEnabled(self) -> bool:
        return self.enabled

    def setVisible(self, visible: bool) -> None:
        self.visible = bool(visible)

    def show(self) -> None:
        self.visible = True

    def hide(self) -> None:
        self.visible = False

    def close(self) -> bool:
        self.visible = False
        return True

    def setToolTip(self, text: str) -> None:
        self.toolTip = text

    def setLayout(self, layout) -> None:
        self._layout = layout
        layout._owner = self

    def layout(self):
        return self._layout

    def setFocus(self) -> None:
        pass

    def setStyleSheet(self, sheet: str) -> None:
        self.styleSheet = sheet

    def setSizePolicy(self, *args) -> None:
        pass

    def setMRMLScene(self, scene) -> None:  # qMRMLWidget and its subclasses
        self.mrmlScene = scene
        for child in self.findChildren(QWidget):
            if hasattr(type(child), "setMRMLScene") and child is not self and hasattr(child, "_mrml_aware"):
                child.setMRMLScene(scene)


class QLayout(QObject):
    def __init__(self, parent=None) -> None:
        super().__init__(None)
        self._owner = None
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def addWidget(self, widget, *args) -> None:
        owner = self._owner
        if owner is not None:
            widget.setParent(owner)
        else:
            widget.setParent(self)

    def addRow(self, *items) -> None:
        for item in items:
            if isinstance(item, QWidget):
                self.addWidget(item)

    def addLayout(self, layout, *args) -> None:
        pass

    def addStretch(self, *args) -> None:
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QLabel(QWidget):
    def __init__(self, text="", parent=None) -> None:
        super().__init__(parent if isinstance(parent, QObject) else None)
        self.text = text if isinstance(text, str) else ""
        self.wordWrap = False

    def setText(self, text: str) -> None:
        self.text = str(text)


class QAbstractButton(QWidget):
    SIGNALS = ("clicked", "toggled", "pressed", "released", "stateChanged")

    def __init__(self, text="", parent=None) -> None:
        super().__init__(parent if isinstance(parent, QObject) else None)
        self.text = text if isinstance(text, str) else ""
        self.checkable = False
        self._checked = False

    @property
    def checked(self) -> bool:
        return self._checked

    @checked.setter
    def checked(self, value: bool) -> None:
        value = bool(value)
        if value != self._checked:
            self._checked = value
            self._emit("toggled", value)
            self._emit("stateChanged", 2 if value else 0)

    def setChecked(self, value: bool) -> None:
        self.checked = value

    def isChecked(self) -> bool:
        return self.checked

    def setText(self, text: str) -> None:
        self.text = text

    def click(self) -> None:
        """What a user's click does: nothing on a disabled button, else ``clicked(checked)``."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self._emit("clicked", self.checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    def setMenu(self, menu) -> None:
        self.menu = menu

    def setDefaultAction(self, action) -> None:
        self._default = action

    def defaultAction(self):
        return getattr(self, "_default", None)


class QCheckBox(QAbstractButton):
    def __init__(self, text="", parent=None) -> None:
        super().__init__(text, parent)
        self.checkable = True


class QLineEdit(QWidget):
    SIGNALS = ("textChanged", "editingFinished", "returnPressed")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text = ""
        self.echoMode = 0
        self.placeholderText = ""

    text = _notifying("_text", "textChanged")

    def setText(self, value: str) -> None:
        self.text = value


class QProgressBar(QWidget):
    SIGNALS = ("valueChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.value = 0
        self.minimum, self.maximum = 0, 100

    def setValue(self, value: int) -> None:
        self.value = int(value)

    def setRange(self, low: int, high: int) -> None:
        self.minimum, self.maximum = low, high


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged", "activated", "currentTextChanged")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[list] = []
        self._current = -1

    def addItem(self, text: str, data=None) -> None:
        self._items.append([str(text), data])
        if self._current < 0:
            self._current = 0
            self._emit("currentIndexChanged", 0)

    def clear(self) -> None:
        self._items.clear()
        if self._current != -1:
            self._current = -1
            self._emit("currentIndexChanged", -1)

    @property
    def count(self) -> int:  # Q_PROPERTY
        return len(self._items)

    def itemText(self, index: int) -> str:
        return self._items[index][0] if 0 <= index < len(self._items) else ""

    def itemData(self, index: int):
        return self._items[index][1] if 0 <= index < len(self._items) else None

    def findData(self, data) -> int:
        return next((i for i, item in enumerate(self._items) if item[1] == data), -1)

    def findText(self, text: str) -> int:
        return next((i for i, item in enumerate(self._items) if item[0] == text), -1)

    @property
    def currentIndex(self) -> int:
        return self._current

    @currentIndex.setter
    def currentIndex(self, index: int) -> None:
        index = int(index) if -1 <= int(index) < len(self._items) else -1
        if index != self._current:
            self._current = index
            self._emit("currentIndexChanged", index)

    def setCurrentIndex(self, index: int) -> None:
        self.currentIndex = index

    @property
    def currentText(self) -> str:
        return self.itemText(self._current)

    @property
    def currentData(self):  # Q_PROPERTY (Qt >= 5.2)
        return self.itemData(self._current)

    def wheelEvent(self, steps: int) -> None:
        """A mouse-wheel turn over the box: Qt's QComboBox moves the selection."""
        self.currentIndex = min(max(self._current + steps, 0), len(self._items) - 1)


class QListWidgetItem:
    def __init__(self, text: str = "") -> None:
        self._text = text
        self._data: dict = {}
        self._flags = Qt.ItemIsEnabled | Qt.ItemIsSelectable
        self.toolTip = ""

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text

    def setData(self, role: int, value) -> None:
        self._data[role] = value

    def data(self, role: int):
        return self._data.get(role)

    def flags(self) -> int:
        return self._flags

    def setFlags(self, flags: int) -> None:
        self._flags = int(flags)

    def setToolTip(self, text: str) -> None:
        self.toolTip = text


class QListWidget(QWidget):
    SIGNALS = ("currentRowChanged", "itemDoubleClicked", "itemActivated")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[QListWidgetItem] = []
        self._row = -1

    def clear(self) -> None:
        self._items.clear()
        self._row = -1

    def addItem(self, item) -> None:
        self._items.append(item if isinstance(item, QListWidgetItem) else QListWidgetItem(str(item)))

    @property
    def count(self) -> int:  # Q_PROPERTY
        return len(self._items)

    def item(self, row: int):
        return self._items[row] if 0 <= row < len(self._items) else None

    def currentItem(self):
        return self.item(self._row)

    @property
    def currentRow(self) -> int:  # Q_PROPERTY
        return self._row

    def setCurrentRow(self, row: int) -> None:
        """Select a row, as a click does: a disabled item cannot be selected."""
        item = self.item(row)
        if item is not None and not item.flags() & Qt.ItemIsEnabled:
            return
        if row != self._row:
            self._row = row
            self._emit("currentRowChanged", row)


class QTableWidgetItem:
    def __init__(self, text: str = "") -> None:
        self._text = str(text)
        self._data: dict = {}
        self._flags = Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsEditable
        self.toolTip = ""
        self.background = None
        self.font = None

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text

    def flags(self) -> int:
        return self._flags

    def setFlags(self, flags: int) -> None:
        self._flags = int(flags)

    def setToolTip(self, text: str) -> None:
        self.toolTip = text

    def setBackground(self, brush) -> None:
        self.background = brush

    def setForeground(self, brush) -> None:
        self.foreground = brush

    def setFont(self, font) -> None:
        self.font = font

    def setData(self, role: int, value) -> None:
        self._data[role] = value

    def data(self, role: int):
        return self._data.get(role)


class QAbstractItemView(QWidget):
    NoEditTriggers = 0
    SelectRows = 1
    SingleSelection = 1


class QTableWidget(QAbstractItemView):
    SIGNALS = ("cellClicked", "currentCellChanged", "itemSelectionChanged", "cellDoubleClicked")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows, self._columns = 0, 0
        self._items: dict = {}
        self._widgets: dict = {}
        self._headers: list[str] = []
        self._current = (-1, -1)

    def setColumnCount(self, n: int) -> None:
        self._columns = n

    @property
    def columnCount(self) -> int:  # Q_PROPERTY
        return self._columns

    def setRowCount(self, n: int) -> None:
        self._rows = n
        self._items = {k: v for k, v in self._items.items() if k[0] < n}
        self._widgets = {k: v for k, v in self._widgets.items() if k[0] < n}
        if self._current[0] >= n:
            self._current = (-1, -1)

    @property
    def rowCount(self) -> int:  # Q_PROPERTY
        return self._rows

    def setHorizontalHeaderLabels(self, labels) -> None:
        self._headers = list(labels)

    def horizontalHeaderItem(self, column: int):
        return QTableWidgetItem(self._headers[column]) if column < len(self._headers) else None

    def setItem(self, row: int, column: int, item) -> None:
        if row >= self._rows or column >= self._columns:
            return  # Qt ignores cells outside the table
        self._items[(row, column)] = item

    def item(self, row: int, column: int):
        return self._items.get((row, column))

    def setCellWidget(self, row: int, column: int, widget) -> None:
        if row < self._rows and column < self._columns:
            self._widgets[(row, column)] = widget
            widget.setParent(self)

    def cellWidget(self, row: int, column: int):
        return self._widgets.get((row, column))

    def currentRow(self) -> int:
        return self._current[0]

    def setCurrentCell(self, row: int, column: int) -> None:
        if 0 <= row < self._rows and (row, column) != self._current:
            previous = self._current
            self._current = (row, column)
            self._emit("currentCellChanged", row, column, previous[0], previous[1])

    def selectRow(self, row: int) -> None:
        self.setCurrentCell(row, max(self._current[1], 0))

    def clickCell(self, row: int, column: int) -> None:
        """What a user's click on a cell does: it becomes current, then ``cellClicked``."""
        self.setCurrentCell(row, column)
        self._emit("cellClicked", row, column)

    def setEditTriggers(self, *args) -> None:
        pass

    def setSelectionBehavior(self, *args) -> None:
        pass

    def setSelectionMode(self, *args) -> None:
        pass

    def resizeColumnsToContents(self) -> None:
        pass


class QDialog(QWidget):
    def exec_(self) -> int:
        return 0

    exec = exec_


class QMessageBox(QDialog):
    Ok, Cancel, Yes, No, Retry, Close = 0x400, 0x400000, 0x4000, 0x10000, 0x80000, 0x200000
    Question, Information, Warning, Critical = 4, 1, 2, 3
    # A test acting as the user queues the buttons it clicks (first in, first out).
    answers: list[int] = []
    shown: list[str] = []

    def exec_(self) -> int:
        QMessageBox.shown.append(getattr(self, "text", ""))
        return QMessageBox.answers.pop(0) if QMessageBox.answers else QMessageBox.Ok

    exec = exec_


class QMenu(QWidget):
    def addAction(self, action) -> None:
        self._actions.append(action)


class QAction(QObject):
    SIGNALS = ("triggered",)

    def __init__(self, text="", parent=None) -> None:
        super().__init__(parent if isinstance(parent, QObject) else None)
        self.text = text

    def setStatusTip(self, text) -> None:
        pass


class QKeySequence:
    def __init__(self, text: str = "") -> None:
        self.text = str(text)

    def toString(self) -> str:
        return self.text


class QShortcut(QObject):
    """A key binding on ``parent``; ``activate()`` is what pressing the key does."""

    SIGNALS = ("activated", "activatedAmbiguously")

    def __init__(self, key=None, parent=None) -> None:
        super().__init__(parent)
        self.key = key if isinstance(key, QKeySequence) else QKeySequence(key or "")
        self.context = Qt.WindowShortcut
        self.enabled = True

    def setKey(self, key) -> None:
        self.key = key if isinstance(key, QKeySequence) else QKeySequence(key)

    def setContext(self, context: int) -> None:
        self.context = context

    def setEnabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def activate(self) -> None:
        if self.enabled:
            self._emit("activated")


class QTimer(QObject):
    """A timer the test's event loop (:meth:`FakeApp.processEvents`) fires."""

    SIGNALS = ("timeout",)
    _pending: list = []  # singleShot callbacks, run by the app's processEvents
    _active: list = []

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.interval = 0
        self.singleShot_ = False
        self._running = False

    def setInterval(self, ms: int) -> None:
        self.interval = ms

    def setSingleShot(self, single: bool) -> None:
        self.singleShot_ = single

    def start(self, ms: int | None = None) -> None:
        if ms is not None:
            self.interval = ms
        self._running = True
        if self not in QTimer._active:
            QTimer._active.append(self)

    def stop(self) -> None:
        self._running = False
        if self in QTimer._active:
            QTimer._active.remove(self)

    def isActive(self) -> bool:
        return self._running

    def fire(self) -> None:
        if self._running:
            if self.singleShot_:
                self.stop()
            self._emit("timeout")

    @staticmethod
    def singleShot(ms: int, callback) -> None:
        QTimer._pending.append(callback)


class QThread:
    @staticmethod
    def msleep(ms: int) -> None:
        import time

        time.sleep(ms / 1000.0)

    @staticmethod
    def currentThread():
        return "main"


class QSettings:
    """In-memory application settings (one store per test session)."""

    _store: dict = {}

    def __init__(self, *args) -> None:
        pass

    def value(self, key: str, default=None):
        return QSettings._store.get(key, default)

    def setValue(self, key: str, value) -> None:
        QSettings._store[key] = value

    def contains(self, key: str) -> bool:
        return key in QSettings._store

    def remove(self, key: str) -> None:
        QSettings._store.pop(key, None)

    def sync(self) -> None:
        pass


class QIcon:
    def __init__(self, path: str = "") -> None:
        self.path = path


class QColor:
    def __init__(self, *args) -> None:
        self.args = args


class QBrush:
    def __init__(self, color=None) -> None:
        self.color = color


class QFont:
    def __init__(self) -> None:
        self._italic = False
        self._bold = False

    def setItalic(self, italic: bool) -> None:
        self._italic = italic

    def italic(self) -> bool:
        return self._italic

    def setBold(self, bold: bool) -> None:
        self._bold = bold


class QSizePolicy:
    Preferred, Expanding, Minimum = 5, 7, 1

    def __init__(self, *args) -> None:
        pass


class QApplication:
    cursors: list = []

    @staticmethod
    def setOverrideCursor(cursor) -> None:
        QApplication.cursors.append(cursor)

    @staticmethod
    def restoreOverrideCursor() -> None:
        if QApplication.cursors:
            QApplication.cursors.pop()


class QFile:
    ReadOnly = 1

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def exists(self) -> bool:
        return Path(self.path).is_file()

    def open(self, mode) -> bool:
        return self.exists()

    def close(self) -> None:
        pass


class QStandardPaths:
    AppDataLocation = 17


class QUrl:
    TolerantMode = 0

    def __init__(self, url: str = "", mode: int = 0) -> None:
        self.url = url


class QDesktopServices:
    @staticmethod
    def openUrl(url) -> bool:
        return False


class _Qt:
    """The ``Qt`` namespace: the enum values the module uses."""

    UserRole = 0x0100
    ToolTipRole = 3
    ItemIsSelectable, ItemIsEditable, ItemIsEnabled = 1, 2, 32
    WaitCursor, BusyCursor = 3, 16
    WindowShortcut, WidgetShortcut, WidgetWithChildrenShortcut, ApplicationShortcut = 1, 0, 3, 2
    ShiftModifier = 0x02000000
    AlignLeft = 1
    Key_Up, Key_Down = 0x01000013, 0x01000015


Qt = _Qt


# --------------------------------------------------------------------------- ctk


class ctkCollapsibleButton(QAbstractButton):
    def __init__(self, parent=None) -> None:
        super().__init__("", parent)
        self.collapsed = False


class ctkPathLineEdit(QWidget):
    SIGNALS = ("currentPathChanged",)
    Dirs, Files = 1, 2

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._path = ""
        self.filters = 0

    currentPath = _notifying("_path", "currentPathChanged")  # noqa: N815 - the Qt property's name

    def setCurrentPath(self, value: str) -> None:
        self.currentPath = value


class ctkDirectoryButton(QWidget):
    SIGNALS = ("directoryChanged",)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._directory = ""

    directory = _notifying("_directory", "directoryChanged")


class ctkComboBox(QComboBox):
    """ctkComboBox: a QComboBox whose mouse-wheel behaviour is a property."""

    NeverScroll, AlwaysScroll, ScrollWithFocus, ScrollWithNoVScrollBar = 0, 1, 2, 3

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.scrollWheelEffect = ctkComboBox.AlwaysScroll

    def setScrollWheelEffect(self, effect: int) -> None:
        self.scrollWheelEffect = effect

    def wheelEvent(self, steps: int) -> None:
        if self.scrollWheelEffect == ctkComboBox.AlwaysScroll:
            super().wheelEvent(steps)


class ctkCheckBox(QCheckBox):
    pass


class ctkMessageBox(QMessageBox):
    pass


# --------------------------------------------------------------------------- .ui loader


def _property_value(prop: ET.Element):
    for child in prop:
        if child.tag in ("string", "cstring"):
            return child.text or ""
        if child.tag == "bool":
            return child.text == "true"
        if child.tag == "number":
            return int(child.text)
        if child.tag == "stringlist":
            return [s.text or "" for s in child.findall("string")]
        if child.tag == "enum":
            return child.text
    return None


class QUiLoader:
    """Builds the widget tree of a ``.ui`` file from the classes registered in :data:`WIDGET_CLASSES`."""

    def load(self, qfile: QFile, parent=None):
        root = ET.parse(qfile.path).getroot().find("widget")
        return self._build(root, parent)

    def _build(self, element: ET.Element, parent):
        klass = WIDGET_CLASSES.get(element.get("class"))
        if klass is None:
            raise RuntimeError(f"the test's qt stand-in has no widget class {element.get('class')!r}")
        widget = klass()
        if parent is not None:
            widget.setParent(parent)
        widget.setObjectName(element.get("name") or "")
        for prop in element.findall("property"):
            name, value = prop.get("name"), _property_value(prop)
            if name == "SlicerParameterName" or name not in ("text", "checked", "checkable", "nodeTypes", "enabled",
                                                               "noneEnabled", "addEnabled", "removeEnabled",
                                                               "toolTip", "collapsed"):
                widget.setProperty(name, value)
            else:
                setattr(widget, name, value)
        for child in element.iter("widget"):
            if child is element:
                continue
            # Only direct widget descendants (through layouts/items), not grandchildren.
            if _widget_parent(element, child) is element:
                self._build(child, widget)
        return widget


def _widget_parent(root: ET.Element, target: ET.Element):
    """The nearest ``<widget>`` ancestor of ``target`` below (or equal to) ``root``."""
    parents = {child: parent for parent in root.iter() for child in parent}
    node = parents.get(target)
    while node is not None and node.tag != "widget":
        node = parents.get(node)
    return node


WIDGET_CLASSES: dict[str, type] = {}

# Widget classes the module never uses but Slicer's parameterNodeWrapper names in its connector
# registry: they exist so that registry can be built; no behaviour is imitated for them.
_UNUSED_QT = ("QDoubleSpinBox", "QSlider", "QSpinBox", "QTextEdit")
_UNUSED_CTK = ("ctkCheckablePushButton", "ctkColorPickerButton", "ctkDoubleRangeSlider", "ctkDoubleSlider",
               "ctkDoubleSpinBox", "ctkRangeWidget", "ctkSliderWidget", "ctkWidgetsUtils")


def make_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """Fresh ``qt`` and ``ctk`` module objects holding the classes above."""
    qt = types.ModuleType("qt")
    ctk = types.ModuleType("ctk")
    g = globals()
    for name in ("QObject", "QWidget", "QLayout", "QVBoxLayout", "QHBoxLayout", "QGridLayout", "QFormLayout",
                 "QLabel", "QAbstractButton", "QPushButton", "QToolButton", "QCheckBox", "QLineEdit",
                 "QProgressBar", "QComboBox", "QListWidget", "QAbstractItemView", "QListWidgetItem", "QTableWidget",
                 "QTableWidgetItem",
                 "QDialog", "QMessageBox", "QMenu", "QAction", "QKeySequence", "QShortcut", "QTimer", "QThread",
                 "QSettings", "QIcon", "QColor", "QBrush", "QFont", "QSizePolicy", "QApplication", "QFile",
                 "QStandardPaths", "QUrl", "QDesktopServices", "QUiLoader", "Qt", "Signal"):
        setattr(qt, name, g[name])
    for name in ("ctkCollapsibleButton", "ctkPathLineEdit", "ctkDirectoryButton", "ctkComboBox", "ctkCheckBox",
                 "ctkMessageBox"):
        setattr(ctk, name, g[name])
    for module, names in ((qt, _UNUSED_QT), (ctk, _UNUSED_CTK)):
        for name in names:
            setattr(module, name, type(name, (QWidget,), {}))
    return qt, ctk
