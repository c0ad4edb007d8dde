"""Upsampler families, one file each; importing this package registers every class."""
from .base import Upsampler
from . import baselines, carafe, dysample, fade, sapa, sapa_deform  # noqa: F401  (registration)

__all__ = ['Upsampler']
