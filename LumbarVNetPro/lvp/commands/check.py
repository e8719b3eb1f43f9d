"""``lvp check``: read and validate inputs without running the network."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lvp check INPUT...``."""
    p = sub.add_parser("check", help="read and validate input series (no inference)",
                       description="Read each input (DICOM folder, NIfTI, NRRD, MHA), bring it to LVP's "
                       "canonical orientation and run every validation check.")
    p.add_argument("inputs", nargs="+", help="DICOM folder or image file")
    p.add_argument("--series", default=None, help="SeriesInstanceUID to read from a DICOM folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print a one-line summary per valid input; the first invalid one raises InputError."""
    from lvp.io.read import read_volume  # imported here: SimpleITK/pydicom slow down every `lvp` call

    for path in args.inputs:
        vol = read_volume(path, args.series)
        lr, si, ap = vol.extent_mm
        print(f"{path}: OK  {vol.meta['format']}  {vol.shape[0]} sagittal slices, "
              f"spacing {vol.spacing[0]:.2f} x {vol.spacing[1]:.2f} x {vol.spacing[2]:.2f} mm (LR x SI x AP), "
              f"field of view {lr:.0f} x {si:.0f} x {ap:.0f} mm")
    return 0
