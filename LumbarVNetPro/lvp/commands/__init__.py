"""Sub-commands of ``lvp``.

Each module in this package defines ``register(subparsers)``, which adds its sub-command(s)
with ``set_defaults(func=...)``. :mod:`lvp.cli` discovers them, so adding a command never edits
a central list.
"""
