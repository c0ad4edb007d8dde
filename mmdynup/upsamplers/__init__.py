"""Upsampler families, one file each; importing this package registers every class."""
from .base import Upsampler
from . import baselines, carafe, dysample, fade, sapa, sapa_deform  # noqa: F401  (registration)
from . import a2u, indexnet  # noqa: F401  (registration)
from . import frfu  # noqa: F401
from . import freqfusion  # noqa: F401
from . import lda_aqu  # noqa: F401

__all__ = ['Upsampler']
