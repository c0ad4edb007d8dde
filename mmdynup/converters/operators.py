"""Imports the per-family converters of the authors' operator repositories (they self-register)."""
from . import carafe, dysample, fade, mirl, sapa, sapa_deform  # noqa: F401
from . import a2u, indexnet  # noqa: F401
from . import frfu  # noqa: F401
from . import freqfusion  # noqa: F401
from . import lda_aqu  # noqa: F401
