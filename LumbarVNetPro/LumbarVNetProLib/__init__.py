"""Testable logic of the LumbarVNetPro Slicer module.

Modules here may import ``slicer`` (MRML) and ``vtk`` but never ``qt``/``ctk``: they run under
the Slicer application and under the Qt-free ``slicer-core`` wheel used by the pytest suite.
Every function takes the scene and nodes as arguments (no ``slicer.mrmlScene`` global).

* :mod:`.parameters` - module settings (the parameter node's fields) and their checks;
* :mod:`.process` - child-process runner with progress parsing and process-tree cancel;
* :mod:`.install` - installing the core's third-party dependencies into Slicer's Python (a
  polled pip child in a private temporary folder; never torch, SimpleITK or numpy);
* :mod:`.models` - finding the bundled model folder; sha256 checks via :mod:`lvp.model_catalog`;
* :mod:`.grades` - per-level grade rows (AI grade, reader grade, accepted / modified);
* :mod:`.scene` - importing an ``lvp infer`` result into MRML and exporting edits back;
* :mod:`.reading` - reader sign-in, worklist, reading timer, drafts and submit;
* :mod:`.workflow` - the panel's state and actions (one polled job at a time: analysis, AI case,
  Recompute, install; grades and keys; reading); the widget only wires Qt to it;
* :mod:`.selftest` - the flows shared by the Slicer self-test and the pytest suite
  (``widget_flow`` drives the panel itself, ``full_flow`` the logic with edits and renames).
"""
