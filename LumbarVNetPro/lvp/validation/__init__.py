"""Validation of LVP's readings against the shared data's reference masks and grades."""
