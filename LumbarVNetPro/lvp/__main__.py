"""``python -m lvp`` runs the command line (used by the Slicer module's child process)."""

import sys

from lvp.cli import main

sys.exit(main())
