"""``python -m lvp`` runs the command line (used by the Slicer module's child process)."""

import sys

from lvp.cli import FAST_EXIT_COMMANDS, command_word, exit_now, main

code = main()
if command_word(sys.argv[1:]) in FAST_EXIT_COMMANDS:
    exit_now(code)  # results are written and closed: no interpreter teardown (≈ 0.08 s)
sys.exit(code)
