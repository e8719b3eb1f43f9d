"""``lvp evaluate --data <dir>``: Dice, HD95 and level identification against reference masks."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser("evaluate", help="score the model on labelled data (JSON + table)",
                              description="Reads the shared-data layouts (spider-t2-space, mrs-ivd-t2, "
                              "chu-vb-t2) and the original SPIDER layout (images/, masks/).")
    p.add_argument("--data", required=True, help="data folder (a data set or a folder of data sets)")
    p.add_argument("--model", default=None, help="model folder (default: $LVP_MODEL_DIR or <repo>/models)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--split", default="all", choices=["all", "validation", "train"],
                   help="validation: the model's held-out SPIDER cases plus every evaluation-only case "
                   "(MRS IVD, Chu VB); train: its training cases")
    p.add_argument("--cases", default=None, help="comma-separated case ids (overrides --split)")
    p.add_argument("-o", "--out", default="out/evaluation", help="output folder")
    p.add_argument("--no-levels", action="store_true", help="skip level identification")
    p.add_argument("--derived-labels", default=None, metavar="DIR",
                   help="folder of <case>_labels5.nii.gz (SPIDER masks + derived sacrum, e.g. models/training-labels): "
                   "score those cases against them, sacrum Dice included")
    p.add_argument("--synth", default=None, choices=["t1", "invert"],
                   help="score on a synthesised contrast of each case: t1 (T1-like intensities from the reference "
                   "labels) or invert (1 - image, label-free)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and write ``evaluation.json`` and ``evaluation.txt``."""
    from pathlib import Path

    from lvp.errors import InputError
    from lvp.evaluation import evaluate, format_table, write_result
    from lvp.segmenter import NetworkSegmenter

    seg = NetworkSegmenter(args.model, device=args.device)
    training = seg.entry.data.get("training", {})
    if args.cases:
        wanted = set(args.cases.split(","))
        filt = lambda c: c.case_id in wanted
    elif args.split == "validation":
        held, trained = set(training.get("validation_cases", [])), set(training.get("train_cases", []))
        filt = lambda c: c.case_id in held or (c.case_id not in trained and c.scheme not in ("lvp3", "spider"))
    elif args.split == "train":
        trained = set(training.get("train_cases", []))
        filt = lambda c: c.case_id in trained
    else:
        filt = None
    label_levels = None
    if not args.no_levels:
        from lvp.labelling import label_levels
    result = evaluate(args.data, seg.segment, label_levels, filt, args.derived_labels, args.synth)
    if not result["cases"]:
        raise InputError(f"no labelled cases found in {args.data} for this selection")
    result["model"] = seg.info
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_result(result, out / "evaluation.json")
    table = format_table(result)
    (out / "evaluation.txt").write_text(table + "\n")
    print(table)
    print(f"written {out / 'evaluation.json'}")
    return 0
