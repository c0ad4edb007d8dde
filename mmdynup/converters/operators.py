"""Imports the per-family converters of the authors' operator repositories (they self-register)."""
from . import carafe, dysample, fade, sapa  # noqa: F401
