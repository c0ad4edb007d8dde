"""Converter for the authors' SAPA-deform operator (tiny-smart/sapa ``sapa_deform.py``, class
``SAPADeform``; the segmentation / detection forks carry it with ``scale_factor`` for
``up_factor``) -> :class:`~mmdynup.upsamplers.sapa_deform.SAPADeform`.

Our module keeps the official layer names (``norm_y``, ``norm_x``, ``q``, ``k``, ``offset``), so
the rename table is empty. The official forward is ``m(y, x)``: ``y`` is our ``guide``.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.sapa_deform import SAPADeform
from .official import OfficialConversion, register_official
from .sapa import SAPA_COMMON_ARGUMENTS, convert_sapa_family, sapa_arguments_to_ours

OFFICIAL = 'sapa_deform.SAPADeform'
# Official constructor argument -> ours: SAPA's table without the window size, plus the points.
_SAPA_DEFORM_ARGUMENTS = {
    **{name: ours for name, ours in SAPA_COMMON_ARGUMENTS.items() if name != 'up_kernel_size'},
    'scale_factor': 'scale_factor', 'num_point': 'num_point', 'groups': 'groups',
    'high_offset': 'high_offset'}


@register_official(OFFICIAL)
def convert_sapa_deform(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``SAPADeform(dim_y, dim_x=None, up_factor=2, num_point=9, groups=4, embedding_dim=32,
    qkv_bias=True, high_offset=True, norm=False)`` -> our :class:`SAPADeform`."""
    arguments = sapa_arguments_to_ours(OFFICIAL, kwargs, _SAPA_DEFORM_ARGUMENTS)
    return convert_sapa_family(OFFICIAL, SAPADeform(**arguments), state_dict)
