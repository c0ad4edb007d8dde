"""A decode head's ``loss_decode`` built through mmseg's registry.

mmseg's ``BaseDecodeHead`` builds ``loss_decode`` with its deprecated ``build_loss``, which warns
for every head built. Our heads hand ``BaseDecodeHead`` an empty list and build the same modules
here, with ``BaseDecodeHead``'s rules: a dict gives one loss module, a list of dicts a
``ModuleList``.
"""
from __future__ import annotations

from typing import Dict, Mapping

from mmseg.registry import MODELS
from torch import nn

#: ``BaseDecodeHead``'s default ``loss_decode``.
DEFAULT_LOSS_DECODE: Dict = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)


def build_decode_losses(cfg, owner: str) -> nn.Module:
    """``loss_decode`` (a dict or a list / tuple of dicts) -> a loss module or a ModuleList."""
    if isinstance(cfg, Mapping):
        return MODELS.build(cfg)
    if isinstance(cfg, (list, tuple)) and all(isinstance(item, Mapping) for item in cfg):
        return nn.ModuleList(MODELS.build(item) for item in cfg)
    raise TypeError(f'{owner}: loss_decode must be a dict such as '
                    f'dict(type="CrossEntropyLoss") or a list of them, got {cfg!r}')
