"""Model choice: the bundled catalogue or an offline folder, checked by sha256 before use.

A model folder holds the weights and a ``manifest.json`` listing every file with its sha256
(``{"name": ..., "version": ..., "files": {"model.onnx": "<sha256>", ...}}``). The catalogue
(``models/catalog.json`` of the extension) lists models by name with the same ``files`` map, so
a folder copied by hand (offline sites) is checked against the catalogue's hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "manifest.json"


class ModelCheckError(RuntimeError):
    """The model folder is missing files or a file's sha256 does not match (readable message)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load_catalog(path: Path) -> dict[str, dict]:
    """Catalogue entries by model name (an absent catalogue is empty)."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {entry["name"]: entry for entry in data.get("models", [])}


def verify_model_folder(folder: Path, expected: dict[str, str] | None = None) -> dict:
    """Check every file of a model folder against its sha256; returns the manifest.

    ``expected`` (file -> sha256, e.g. from the catalogue) overrides the folder's own manifest,
    so a tampered manifest cannot vouch for tampered weights.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelCheckError(f"model folder not found: {folder}")
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    files = expected if expected is not None else manifest.get("files")
    if not files:
        raise ModelCheckError(f"{folder} has no {MANIFEST} listing its files and their sha256")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise ModelCheckError(f"model file missing: {path}")
        actual = sha256_file(path)
        if actual.lower() != str(digest).lower():
            raise ModelCheckError(
                f"model file {name} is corrupted or not the expected version "
                f"(sha256 {actual[:12]}…, expected {str(digest)[:12]}…); download or copy it again"
            )
    return manifest
