"""``lvp export``: trained weights -> model folder (ONNX + torch + models.json)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser("export", help="export trained weights to ONNX and a model folder")
    p.add_argument("weights", help="model.pt / last.pt written by lvp train")
    p.add_argument("-o", "--out", default="models", help="model folder (default: models)")
    p.add_argument("--name", default="lvp-vnet")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--metadata", help="JSON file whose keys are added to the models.json entry")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and check that ONNX Runtime reproduces the torch logits."""
    from pathlib import Path

    from lvp.errors import ModelError
    from lvp.network.export import export_model_folder, load_weights, max_abs_difference

    extra = json.loads(Path(args.metadata).read_text()) if args.metadata else None
    entry = export_model_folder(args.weights, args.out, args.name, args.version, extra=extra)
    model, _ = load_weights(Path(args.out) / entry["files"]["torch"]["path"])
    diff = max_abs_difference(model, Path(args.out) / entry["files"]["onnx"]["path"])
    if diff > 1e-3:
        raise ModelError(f"ONNX export differs from torch by {diff:.2e} in the logits")
    print(f"exported {args.name} {args.version} to {args.out} (max |onnx - torch| logit {diff:.1e})")
    return 0
