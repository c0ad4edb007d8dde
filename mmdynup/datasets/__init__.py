"""Synthetic data sets for the demo and the tests (written in the hosts' on-disk layouts)."""
import importlib.util

from .synthetic_ade import write_synthetic_ade
from .synthetic_nyu import write_synthetic_nyu
from .imagenet_layout import ImageNetLayout, write_synthetic_imagenet
from . import classification_transforms, rand_augment  # noqa: F401  (register the transforms)

if importlib.util.find_spec('mmseg') is not None:
    from .synthetic_ade import register_dataset as _register_ade

    _register_ade()

__all__ = ['ImageNetLayout', 'write_synthetic_ade', 'write_synthetic_imagenet',
           'write_synthetic_nyu']
