"""User-facing errors.

Every problem caused by the user's input (a file, a setting, a database state) raises a
subclass of :class:`LVPError` with a message that names the problem and what to do. The command
line prints the message without a traceback and exits non-zero; the Slicer module shows it in a
message box.
"""


class LVPError(Exception):
    """Base class of errors that are reported to the user as a plain message."""

    exit_code = 2


class InputError(LVPError):
    """The input image cannot be used (format, geometry, orientation, content)."""


class OutputError(LVPError):
    """The output folder cannot take a result (a file, not writable, in use by another run)."""


class ModelError(LVPError):
    """The model files are missing, corrupted or incompatible."""


class DatabaseError(LVPError):
    """A reading-database rule was violated or the database cannot be reached."""


class ConfigError(LVPError):
    """A configuration file or command line option is invalid."""
