"""The model folder: ``models.json``, sha256 verification and where the folder is.

A model folder holds ``models.json`` and the weight files it lists. Resolution order:
``--model DIR`` (the ``model_dir`` argument), the ``LVP_MODEL_DIR`` environment variable, then
the bundled folder (:func:`bundled_model_candidates`: ``models/`` beside the ``lvp`` package in
an installed Slicer extension, ``<repository>/models`` in a source checkout). Every file is
checked against its sha256 before it is used, and a mismatch is refused with a
:class:`~lvp.errors.ModelError` (no silent use of a corrupted or swapped file).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lvp.errors import ModelError

MODEL_ENV = "LVP_MODEL_DIR"
CATALOG = "models.json"
DEFAULT_MODEL = "lvp-vnet"


def bundled_model_candidates(core_parent: str | Path | None = None) -> list[Path]:
    """Where the bundled model folder may be, in the order searched.

    ``core_parent`` is the folder holding the ``lvp`` package (default: this package's parent).
    An installed Slicer extension has ``qt-scripted-modules/{lvp,models}`` side by side (the
    CMake build copies ``<repo>/models`` there); a source checkout has ``<repo>/LumbarVNetPro/lvp``
    and ``<repo>/models``, one level higher.
    """
    parent = Path(core_parent) if core_parent is not None else Path(__file__).resolve().parents[1]
    return [parent / "models", parent.parent / "models"]


def default_model_dir() -> Path:
    """The bundled model folder: the first of :func:`bundled_model_candidates` holding ``models.json``.

    When none does, the source checkout's ``<repo>/models`` is returned, so the error names it.
    """
    candidates = bundled_model_candidates()
    for candidate in candidates:
        if (candidate / CATALOG).is_file():
            return candidate
    return candidates[-1]


def resolve_model_dir(model_dir: str | Path | None = None) -> Path:
    """The model folder to use: argument, then ``$LVP_MODEL_DIR``, then the bundled folder."""
    explicit = model_dir or os.environ.get(MODEL_ENV)
    path = Path(explicit or default_model_dir()).expanduser()
    if not (path / CATALOG).is_file():
        where = (f"model folder {path}" if explicit else
                 "the bundled model folder (searched " + ", ".join(str(p) for p in bundled_model_candidates()) + ")")
        raise ModelError(
            f"no {CATALOG} in {where}; pass --model DIR or set {MODEL_ENV} to a folder "
            "holding a trained LVP model"
        )
    return path


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelEntry:
    """One model of ``models.json``."""

    folder: Path
    data: dict

    @property
    def name(self) -> str:
        """Model name."""
        return self.data["name"]

    @property
    def version(self) -> str:
        """Model version."""
        return self.data["version"]

    @property
    def input_spacing(self) -> tuple[float, float, float]:
        """Working spacing (lr, si, ap) mm."""
        return tuple(float(v) for v in self.data["input_spacing"])  # type: ignore[return-value]

    @property
    def network(self) -> dict:
        """Network config (:class:`lvp.network.vnet.VNetConfig` fields)."""
        return self.data["network"]

    def file(self, kind: str) -> Path:
        """Path of the ``onnx`` or ``torch`` weights after verifying its sha256."""
        files = self.data.get("files", {})
        if kind not in files:
            raise ModelError(f"model {self.name} in {self.folder} has no {kind} weights")
        entry = files[kind]
        path = self.folder / entry["path"]
        if not path.is_file():
            raise ModelError(f"model file {path} is missing")
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            raise ModelError(
                f"model file {path} is corrupted or was replaced: sha256 {digest[:12]}... differs from "
                f"{entry['sha256'][:12]}... in {self.folder / CATALOG}; restore the file or point "
                "--model at an intact model folder"
            )
        return path


def load_catalog(model_dir: str | Path | None = None) -> dict:
    """Parsed ``models.json`` of the resolved folder."""
    folder = resolve_model_dir(model_dir)
    try:
        data = json.loads((folder / CATALOG).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read {folder / CATALOG}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ModelError(f"{folder / CATALOG} has no 'models' list")
    return data


def get_model(model_dir: str | Path | None = None, name: str | None = None) -> ModelEntry:
    """The model entry ``name`` (default: the catalogue's ``default``) of the resolved folder."""
    folder = resolve_model_dir(model_dir)
    data = load_catalog(folder)
    wanted = name or data.get("default") or DEFAULT_MODEL
    for m in data["models"]:
        if m.get("name") == wanted:
            for key in ("name", "version", "input_spacing", "network", "files"):
                if key not in m:
                    raise ModelError(f"model {wanted} in {folder / CATALOG} lacks '{key}'")
            return ModelEntry(folder, m)
    raise ModelError(f"no model named {wanted!r} in {folder / CATALOG}")
