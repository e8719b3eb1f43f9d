r"""Reader names (user names): what the reading database accepts, and why.

A reader's user name is also a folder name (the Slicer module's local draft backups live in
``<drafts>/<reader>/``) and a cell of exported CSV files. So it is one plain word: letters,
digits and ``. _ - @``, starting with a letter or digit, not ending with a dot, at most 100
characters, and not a device name Windows reserves. That rules out ``/``, ``\``, ``..`` as a whole
name, and a leading ``= + - @`` that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import re

from lvp.errors import DatabaseError

MAX_LENGTH = 100
_USERNAME = re.compile(r"\w(?:[\w.@-]{0,%d}[\w@-])?" % (MAX_LENGTH - 2))
# Names Windows refuses as a file or folder name, whatever the extension.
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}


def check_username(name: str) -> str:
    """Return ``name`` stripped if it is an acceptable reader name, else raise :class:`DatabaseError`."""
    name = (name or "").strip()
    if not name:
        raise DatabaseError("a reader needs a non-empty user name")
    if not _USERNAME.fullmatch(name) or name.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise DatabaseError(
            f"reader name {name!r} is not allowed: use letters, digits and . _ - @, starting with a letter "
            f"or digit, at most {MAX_LENGTH} characters (it also names the reader's drafts folder)"
        )
    return name
