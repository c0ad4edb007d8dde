"""Converter for the authors' DySample operator (tiny-smart/dysample ``dysample.py``, class
``DySample``) -> :class:`~mmdynup.upsamplers.dysample.DySample`.

The authors' segmentation / detection forks carry the same class with ``scale_factor`` for
``scale`` and a bias on the scope conv; both are accepted. The parameter layout is already ours
(``offset``, ``scope``, buffer ``init_pos``), so the rename table is empty; ``init_pos`` is loaded,
not recomputed (the integration checkpoints perturb it). The official forward is ``m(x)``.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.dysample import DySample
from .official import (OfficialConversion, convert_same_layout, register_official,
                       refuse_unknown_arguments)

OFFICIAL = 'dysample.DySample'
# Official constructor argument -> ours; the forks renamed ``scale`` to ``scale_factor``.
_ARGUMENTS = {'in_channels': 'in_channels', 'scale': 'scale_factor',
              'scale_factor': 'scale_factor', 'style': 'style', 'groups': 'groups',
              'dyscope': 'dyscope'}


@register_official(OFFICIAL)
def convert_dysample(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``DySample(in_channels, scale=2, style='lp', groups=4, dyscope=False)`` -> our DySample."""
    refuse_unknown_arguments(OFFICIAL, kwargs, _ARGUMENTS)
    if 'scale' in kwargs and 'scale_factor' in kwargs:
        raise TypeError(f'{OFFICIAL}: pass scale or scale_factor, not both; got {kwargs}')
    arguments = {_ARGUMENTS[name]: value for name, value in kwargs.items()}
    # Only the forks' copy of the class gives the scope conv a bias.
    arguments['scope_bias'] = 'scope.bias' in state_dict
    module = DySample(**arguments)
    return convert_same_layout(module, state_dict, OFFICIAL, input_roles={'x': 'x'})
