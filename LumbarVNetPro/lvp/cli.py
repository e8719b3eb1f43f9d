"""The ``lvp`` command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from lvp import __version__
from lvp.errors import LVPError

log = logging.getLogger("lvp")


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every sub-command found in :mod:`lvp.commands`."""
    parser = argparse.ArgumentParser(
        prog="lvp",
        description="LumbarVNetPro: lumbar spine MRI segmentation, level labelling, grading and reader studies.",
    )
    parser.add_argument("--version", action="version", version=f"lvp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import lvp.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"lvp.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lvp``; user errors print one clear line and return a non-zero exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except LVPError as err:
        print(f"lvp {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"lvp {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
