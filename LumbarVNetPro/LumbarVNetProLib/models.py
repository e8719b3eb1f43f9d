"""Model choice for the module: the bundled catalogue or an offline folder, checked before use.

One implementation: the core's :mod:`lvp.model_catalog` (``models.json`` listing each model's
weight files with their sha256; ``--model DIR`` / ``LVP_MODEL_DIR``). This module only finds the
folder the extension ships and verifies a folder before a child process is started, so a
tampered or truncated file is refused in the panel with the core's own message (the child
checks again when it loads the weights).

Where the bundled folder is: the CMake build copies ``<repo>/models`` into the module's folder,
so an installed extension has ``qt-scripted-modules/models`` beside ``LumbarVNetPro.py`` and
``lvp``; in the source tree it is ``<repo>/models``, one level above the module folder. Both are
searched, in the core's order (:func:`lvp.model_catalog.bundled_model_candidates`).
"""

from __future__ import annotations

import os
from pathlib import Path

from lvp.errors import ModelError
from lvp.model_catalog import CATALOG, MODEL_ENV, ModelEntry, bundled_model_candidates, get_model, sha256_of

# The module's name for the core's error (kept for callers that catch it by this name).
ModelCheckError = ModelError
MODULE_DIR = Path(__file__).resolve().parents[1]

__all__ = [
    "CATALOG",
    "MODEL_ENV",
    "ModelCheckError",
    "bundled_model_dir",
    "model_dir_for_run",
    "sha256_of",
    "verify_model_folder",
]


def model_dir_candidates(moduleDir: Path = MODULE_DIR) -> list[Path]:
    """Where the bundled model folder may be, in the order searched.

    The module folder holds ``lvp`` in both layouts, so these are the core's own candidates:
    the child process started with ``--model`` and ``lvp`` run alone resolve the same folder.
    """
    return bundled_model_candidates(moduleDir)


def bundled_model_dir(moduleDir: Path = MODULE_DIR) -> Path | None:
    """The first candidate holding ``models.json``, or None (a build without the model)."""
    return next((p for p in model_dir_candidates(moduleDir) if (p / CATALOG).is_file()), None)


def model_dir_for_run(folder: Path | str | None = None, moduleDir: Path = MODULE_DIR) -> Path:
    """The model folder a run uses: ``folder`` (offline), then ``$LVP_MODEL_DIR``, then the bundled one.

    Always an explicit folder, so the child process never depends on where the core guesses
    its default. :class:`ModelError` when there is none.
    """
    if folder and str(folder) not in ("", "."):
        return Path(folder)
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    bundled = bundled_model_dir(moduleDir)
    if bundled is None:
        raise ModelError(
            f"the bundled model was not found ({', '.join(str(p) for p in model_dir_candidates(moduleDir))}); "
            f"choose an offline model folder holding {CATALOG} and the weights"
        )
    return bundled


def verify_model_folder(folder: Path | str | None = None, name: str | None = None) -> ModelEntry:
    """Check every weight file of model ``name`` (default: the catalogue's) against its sha256.

    Uses :func:`lvp.model_catalog.get_model` and :meth:`~lvp.model_catalog.ModelEntry.file`;
    raises :class:`ModelError` (no ``models.json``, a file missing, a sha256 mismatch).
    """
    entry = get_model(model_dir_for_run(folder), name)
    for kind in entry.data.get("files", {}):
        entry.file(kind)
    return entry
