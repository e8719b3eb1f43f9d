"""The model folder: ``models.json``, sha256 verification and where the folder is.

A model folder holds ``models.json`` and the weight files it lists. Resolution order:
``--model DIR`` (the ``model_dir`` argument), the ``LVP_MODEL_DIR`` environment variable, then
``<repository>/models``. Every file is checked against its sha256 before it is used, and a
mismatch is refused with a :class:`~lvp.errors.ModelError` (no silent use of a corrupted or
swapped file).
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


def default_model_dir() -> Path:
    """The bundled model folder.

    ``<repo>/models`` in a source checkout; in an installed Slicer extension the core sits in
    ``qt-scripted-modules/lvp`` and the model files may be copied beside it, so the first of
    ``<core>/../models`` and ``<core>/../../models`` that holds a catalogue wins.
    """
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "models", here.parents[2] / "models"):
        if (candidate / CATALOG).is_file():
            return candidate
    return here.parents[2] / "models"


def resolve_model_dir(model_dir: str | Path | None = None) -> Path:
    """The model folder to use: argument, then ``$LVP_MODEL_DIR``, then the repository's ``models/``."""
    chosen = model_dir or os.environ.get(MODEL_ENV) or default_model_dir()
    path = Path(chosen).expanduser()
    if not (path / CATALOG).is_file():
        raise ModelError(
            f"no {CATALOG} in model folder {path}; pass --model DIR or set {MODEL_ENV} to a folder "
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
