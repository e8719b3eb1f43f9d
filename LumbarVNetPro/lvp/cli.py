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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser with every sub-command found in :mod:`lvp.commands`.

    ``command``: the sub-command the command line names. When a module of that name registers it,
    only that module is imported (a one-case ``lvp infer`` child process then does not import the
    study, training and validation commands); otherwise every command is registered, so help and
    "invalid choice" errors list them all.
    """
    parser = argparse.ArgumentParser(
        prog="lvp",
        description="LumbarVNetPro: lumbar spine MRI segmentation, level labelling, grading and reader studies.",
    )
    parser.add_argument("--version", action="version", version=f"lvp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import lvp.commands as commands_pkg

    names = sorted(m.name for m in pkgutil.iter_modules(commands_pkg.__path__))
    if command in names:
        importlib.import_module(f"lvp.commands.{command}").register(sub)
        if command in sub.choices:
            return parser
        return build_parser()  # the module registers other names: every command then
    for name in names:
        importlib.import_module(f"lvp.commands.{name}").register(sub)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The sub-command a command line names: its first word that is not an option of ``lvp`` itself.

    ``lvp``'s own options (``-h``, ``--version``, ``-v``) take no value, so the first word not
    starting with ``-`` is the sub-command. None when ``lvp``'s own help comes first (it lists
    every command).
    """
    for word in argv:
        if word in ("--", "-h", "--help"):
            return None
        if not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lvp``; user errors print one clear line and return a non-zero exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_word(argv))
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
