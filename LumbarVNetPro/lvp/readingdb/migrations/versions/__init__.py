"""Alembic revision scripts of the reading database (a package so that it is installed)."""
