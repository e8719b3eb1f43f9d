"""``lvp validate grades|planes``: reading validation on the shared data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``validate`` command."""
    p = sub.add_parser("validate", help="validate grades or scan planes against the shared data's references")
    p.add_argument("what", choices=["grades", "planes", "numbering"], help="what to validate (numbering: how often "
                   "the numbering check is wrong on perturbed and synthesised SPIDER cases)")
    p.add_argument("--data", type=Path, required=True, help="the shared data folder (with spider-t2-space/)")
    p.add_argument(
        "--pred",
        type=Path,
        default=None,
        help="folder of predicted segmentations: <case>_pred.nii.gz (classes 0..3) or <case>/segmentation.nii.gz "
        "(lvp infer output); default: the reference masks",
    )
    p.add_argument(
        "--write-calibration",
        type=Path,
        default=None,
        metavar="FILE",
        help="grades: also fit the grading models on the reference-mask discs of the non-validation patients and "
        "write the calibration JSON (the shipped one: python -m lvp.validation.grade_calibration)",
    )
    p.add_argument("-o", "--out", type=Path, default=None, help="write the JSON result here")
    p.add_argument("--limit", type=int, default=None, help="only the first N cases (smoke runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen validation and print its summary."""
    if args.what == "grades":
        from lvp.validation.grades import validate_grades

        result = validate_grades(args.data, args.out, args.pred, args.limit, args.write_calibration)
    elif args.what == "numbering":
        from lvp.validation.numbering import validate_numbering

        result = validate_numbering(args.data, args.out, args.limit)
    else:
        from lvp.validation.planes import validate_planes

        result = validate_planes(args.data, args.out, args.pred, args.limit)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    return 0
