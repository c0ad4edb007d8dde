"""Converter for the authors' LDA-AQU operator (duzw9311/LDA-AQU
``mmdet/models/necks/fpn_lau.py``, class ``LDA_AQU``) -> :class:`~mmdynup.upsamplers.lda_aqu.LDAAQU`.

The official forward is ``m(x)``. The fixed point grid (``base_offset``) is a non-persistent
buffer there and is computed on the fly here, so neither state_dict holds it.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.lda_aqu import LDAAQU
from .official import OfficialConversion, load_converted, register_official, rename_keys

OFFICIAL = 'fpn_lau.LDA_AQU'

#: Official layer -> ours (the official offset branch is an ``nn.Sequential``: conv, LayerNorm
#: proxy, GELU, conv; its LayerNorm proxies wrap the ``nn.LayerNorm`` as ``.norm``).
RENAMES = [
    ('proj_q', 'query'),
    ('proj_k', 'key'),
    ('conv_offset.0', 'offset_depthwise'),
    ('conv_offset.1.norm', 'offset_norm'),
    ('conv_offset.3', 'offset_project'),
    ('layer_norm.norm', 'norm'),
    ('relative_position_bias_table', 'relative_position_bias'),
]


def lda_aqu_arguments(in_channels: int, reduction_factor: int = 4, nh: int = 1,
                      scale_factor: float = 2., k_e: int = 3, k_u: int = 3, n_groups: int = 2,
                      range_factor: float = 11, rpb: bool = True) -> dict:
    """``LDA_AQU``'s constructor signature -> our arguments (an unknown name is a TypeError)."""
    return dict(in_channels=in_channels, scale_factor=scale_factor,
                reduction_factor=reduction_factor, num_heads=nh, encoder_kernel=k_e,
                up_kernel=k_u, offset_groups=n_groups, offset_range=range_factor, key_bias=rpb)


@register_official(OFFICIAL)
def convert_lda_aqu(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``LDA_AQU(**kwargs)`` with ``state_dict`` -> loaded :class:`LDAAQU` (``m(x)``)."""
    module = LDAAQU(**lda_aqu_arguments(**kwargs))
    renamed, official_names = rename_keys(state_dict, RENAMES)
    load_converted(module, renamed, OFFICIAL)
    return OfficialConversion(module, official_names, input_roles={'x': 'x'})
