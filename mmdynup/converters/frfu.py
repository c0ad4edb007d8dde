"""Converter for the authors' FRFU operator (yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling
``frfu.py``, class ``FRFU``; the experiments' copies ``upsamplers/rrfu.py`` are the same forward
and parameter names under the class name ``RRFU``) -> :class:`~mmdynup.upsamplers.frfu.FRFU`.

The parameter layout is already ours (four 1x1 convs ``offset``, ``offset_mask``,
``sample_kernel``, ``kernel_mask``; ``coord_base`` is a non-persistent buffer), so the rename
table is empty. The official forward is ``m(x)``.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.frfu import FRFU
from .official import OfficialConversion, convert_same_layout, register_official

OFFICIAL = 'frfu.FRFU'


def frfu_arguments(in_channels: int, scale_factor: int = 2, groups: int = 4,
                   sample_k: int = 3) -> dict:
    """``FRFU``'s constructor signature -> our arguments (an unknown name is a TypeError)."""
    return dict(in_channels=in_channels, scale_factor=scale_factor, groups=groups,
                sample_k=sample_k)


@register_official(OFFICIAL)
def convert_frfu(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``FRFU(**kwargs)`` with ``state_dict`` -> loaded :class:`FRFU` (``m(x)``)."""
    module = FRFU(**frfu_arguments(**kwargs))
    return convert_same_layout(module, state_dict, OFFICIAL, input_roles={'x': 'x'})
