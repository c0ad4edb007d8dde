"""Public entry points: ``list_upsamplers`` and ``build_upsampler`` (kept stable)."""
from __future__ import annotations

from typing import List, Mapping

from torch import nn

from .registry import upsampler_classes


def list_upsamplers() -> List[str]:
    """Names of every registered upsampler, sorted; each builds with :func:`build_upsampler`."""
    return sorted(upsampler_classes())


def build_upsampler(cfg: Mapping) -> nn.Module:
    """Build an upsampler from a config dict such as
    ``dict(type='DySample', in_channels=256, scale_factor=2, guide_channels=256)``.

    ``type`` may carry the ``'mmdynup.'`` scope prefix. Every upsampler accepts ``in_channels``,
    ``scale_factor`` and ``guide_channels`` (ignored by unguided ones); other keys are the
    operator's own arguments.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f'cfg must be a dict with a "type" key, got {type(cfg).__name__}')
    cfg = dict(cfg)
    if 'type' not in cfg:
        raise KeyError(f'cfg must have a "type" key naming an upsampler; got keys {sorted(cfg)}; '
                       f'available: {list_upsamplers()}')
    name = cfg.pop('type')
    if isinstance(name, type):
        cls = name
    else:
        classes = upsampler_classes()
        short = name.split('.', 1)[1] if isinstance(name, str) and name.startswith('mmdynup.') \
            else name
        if short not in classes:
            raise KeyError(f'unknown upsampler type={name!r}; available: {list_upsamplers()}')
        cls = classes[short]
    return cls(**cfg)
