"""Reading a ``.seg.nrrd`` back (test-only, issue 12 item 4: the product writes these files and
never reads them, so the reader lives beside the tests rather than in ``lvp.io.seg_nrrd``).
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from lvp.errors import InputError


def read_seg_nrrd(path: str | Path) -> tuple[sitk.Image, list[dict]]:
    """Read a ``.seg.nrrd`` (one layer): the label image and its segments' header fields."""
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.SetImageIO("NrrdImageIO")
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(f"{path} cannot be read as a segmentation: {str(err).strip().splitlines()[-1]}") from None
    keys = set(image.GetMetaDataKeys())
    segments = []
    n = 0
    while f"Segment{n}_ID" in keys:
        p = f"Segment{n}_"

        def get(name: str, default: str = "", p: str = p) -> str:
            return image.GetMetaData(p + name) if p + name in keys else default

        tags = dict(t.split(":", 1) for t in get("Tags").split("|") if ":" in t)
        segments.append({
            "id": get("ID"),
            "name": get("Name"),
            "color": tuple(float(c) for c in get("Color", "0.5 0.5 0.5").split()),
            "label_value": int(get("LabelValue", "1")),
            "layer": int(get("Layer", "0")),
            "extent": tuple(int(v) for v in get("Extent").split()),
            "terminology": tags.get("TerminologyEntry", ""),
        })
        n += 1
    return image, segments
