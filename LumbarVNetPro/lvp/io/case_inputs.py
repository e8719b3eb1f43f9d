"""Which cases an ``lvp infer`` command line names, and the output folder of each.

A file is one case; a folder gives one case per image file, one per sub-folder (DICOM studies) or
is one DICOM series itself (:func:`expand_inputs`). Masks, LVP's own outputs and result folders
are never inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

from lvp.errors import InputError

SUMMARY_CSV = "summary.csv"
# Files that sit beside images in a folder but are not inputs (reference masks, our own outputs).
_NOT_INPUT_MARKERS = ("_labels.", "_label.", "_seg.", ".seg.", "segmentation.", "semantic.")


def _is_image_file(path: Path) -> bool:
    from lvp.io.read import IMAGE_SUFFIXES

    name = path.name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not any(m in name for m in _NOT_INPUT_MARKERS)


def _holds_dicom(folder: Path, limit: int = 200) -> bool:
    """Whether ``folder`` holds a DICOM file among its first ``limit`` files (preamble check only)."""
    from lvp.io.dicom import _is_dicom_file

    for i, p in enumerate(q for q in folder.rglob("*") if q.is_file()):
        if i >= limit:
            return False
        if _is_dicom_file(p):
            return True
    return False


def _is_result_folder(folder: Path) -> bool:
    """An lvp output (a case's result folder or a batch folder): never an input."""
    return (folder / "report.json").is_file() or (folder / SUMMARY_CSV).is_file()


def expand_inputs(paths: list[str | Path], exclude: Path | None = None) -> list[Path]:
    """Turn the command line's inputs into cases.

    A file is one case. A folder holding image files (not masks) gives one case per file; a folder
    whose sub-folders are the cases (DICOM studies) gives one per sub-folder; any other folder is
    read as one DICOM series. A folder holding image files and sub-folders with DICOM files is
    ambiguous (which is the case?) and refused, naming both. Hidden folders, lvp result folders
    and ``exclude`` (the output folder) are never inputs.
    """
    skip = Path(os.path.abspath(exclude)) if exclude is not None else None
    cases: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and _is_image_file(p))
            subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                             and Path(os.path.abspath(p)) != skip and not _is_result_folder(p))
            if files:
                dicom_dirs = [d for d in subdirs if _holds_dicom(d)]
                if dicom_dirs:
                    names = ", ".join(d.name + "/" for d in dicom_dirs[:3]) + (", ..." if len(dicom_dirs) > 3 else "")
                    raise InputError(
                        f"{path} holds image files ({', '.join(f.name for f in files[:3])}"
                        f"{', ...' if len(files) > 3 else ''}) and DICOM sub-folders ({names}); name the series to "
                        f"read explicitly, e.g. lvp infer {files[0]} {dicom_dirs[0]} -o OUTDIR"
                    )
                cases.extend(files)
            elif subdirs and not any(p.is_file() and not p.name.startswith(".") for p in path.iterdir()):
                cases.extend(subdirs)
            else:
                cases.append(path)
        else:
            cases.append(path)
    return cases


def case_name(path: Path) -> str:
    """An output folder name for a case: the file name without its image suffixes."""
    from lvp.io.read import IMAGE_SUFFIXES

    name = path.name
    for suffix in (*IMAGE_SUFFIXES, ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "case"
    return name or "case"


def output_dirs(cases: list[Path], out: Path) -> list[Path]:
    """One output folder per case: ``out`` itself for a single case, else unique sub-folders."""
    if len(cases) == 1:
        return [out]
    seen: dict[str, int] = {}
    dirs = []
    for case in cases:
        name = case_name(case)
        seen[name] = seen.get(name, 0) + 1
        dirs.append(out / (name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return dirs
