"""Synthetic data sets for the demo and the tests (written in the hosts' on-disk layouts)."""
import importlib.util

from .synthetic_ade import write_synthetic_ade
from .synthetic_nyu import write_synthetic_nyu

if importlib.util.find_spec('mmseg') is not None:
    from .synthetic_ade import register_dataset as _register_ade

    _register_ade()

__all__ = ['write_synthetic_ade', 'write_synthetic_nyu']
