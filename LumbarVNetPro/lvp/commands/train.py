"""``lvp train --config <yaml>``: train the LVP network (CPU, one GPU with AMP, or torchrun DDP).

The one training entry point: ``python -m lvp train`` where the ``lvp`` script is not installed,
``torchrun --nproc_per_node=N -m lvp train`` for several GPUs.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser("train", help="train the segmentation network from a YAML config",
                              description="Train the network. Under torchrun (several GPUs) the same command "
                              "uses DistributedDataParallel.")
    p.add_argument("--config", required=True, help="training YAML (see configs/train_lvp_vnet.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt when present")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values (YAML syntax)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run training; prints where the weights went."""
    from lvp.errors import ConfigError
    from lvp.training.config import TrainConfig
    from lvp.training.loop import apply_overrides, train

    cfg = apply_overrides(TrainConfig.from_yaml(args.config), args.set)
    try:
        result = train(cfg, resume=args.resume)
    except RuntimeError as err:
        if "no training cases" in str(err):
            raise ConfigError(str(err)) from err
        raise
    print(f"trained {result['last_epoch']} epochs; weights: {result['weights']}")
    return 0
