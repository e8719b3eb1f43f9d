"""The ``lvp`` command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from lvp import __version__
from lvp.errors import LVPError

log = logging.getLogger("lvp")

# Commands whose process ends without the interpreter's teardown once main() has returned
# (exit_now): everything they write is closed and in place by then.
FAST_EXIT_COMMANDS = frozenset({"infer"})


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


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` after what ``sys.exit`` does that matters, skipping the rest.

    Tearing down an interpreter that imported numpy, scipy, SimpleITK and ONNX Runtime (≈ 600
    modules, every object freed one by one) takes ≈ 0.08 s on two cores: a tenth of a one-case
    ``lvp infer`` process, after its result is complete. Kept from ``sys.exit``: non-daemon
    threads are joined, atexit handlers run (``lvp infer`` registers only logging's; a test pins
    that), stdout and stderr are flushed. Skipped: freeing memory and modules, which the operating
    system does at once. Where the flush fails (a closed pipe) the normal exit reports it; under a
    profiler or tracer (``python -m cProfile -m lvp infer``, coverage, a debugger) the exit is the
    normal one, so the tool gets to write its results.
    """
    import atexit

    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler, debugger or coverage tool writes its results after this returns
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the handlers sys.exit would run (logging.shutdown flushes log handlers)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
