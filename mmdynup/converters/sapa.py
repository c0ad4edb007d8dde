"""Converters for the authors' SAPA operator modules.

* ``sapa.SAPA`` (poppinace/sapa ``SAPA.py``) -> :class:`~mmdynup.upsamplers.sapa.SAPAB`;
* ``sapaexp.SAPAExp`` (poppinace/sapa ``SAPAExp.py``) -> ``SAPAB`` (``q_mode`` ``'encoder_only'``
  or ``'cat'``) or :class:`~mmdynup.upsamplers.sapa.SAPAG` (``q_mode='gate'``);
* ``sapa_base.SAPA`` (tiny-smart/sapa ``sapa_base.py``, also the forks' ``sapa_base.py``) ->
  :class:`~mmdynup.upsamplers.sapa.SAPABase`.

Our modules keep the official layer names and layouts (``norm_y``, ``norm_x``, ``q``, ``k``,
``qy``, ``qx``, ``gate``, ``v``), so the rename table is empty. The official forward is
``m(y, x)``: ``y`` is our ``guide``, ``x`` our ``x``.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from ..upsamplers.sapa import SAPAB, SAPABase, SAPAG
from .official import (OfficialConversion, convert_same_layout, register_official,
                       refuse_unknown_arguments)

SAPA_INPUT_ROLES = {'y': 'guide', 'x': 'x'}

# Official constructor argument -> ours (for the arguments whose names differ).
SAPA_COMMON_ARGUMENTS = {'dim_y': 'guide_channels', 'dim_x': 'in_channels',
                     'up_factor': 'scale_factor', 'up_kernel_size': 'up_kernel_size',
                     'embedding_dim': 'embedding_dim', 'qkv_bias': 'qkv_bias', 'norm': 'norm'}
_SAPA_ARGUMENTS = dict(SAPA_COMMON_ARGUMENTS)
_SAPAEXP_ARGUMENTS = dict(SAPA_COMMON_ARGUMENTS, out_dim='out_channels', q_mode='q_mode',
                          v_embed='v_embed')
# The segmentation / detection forks renamed ``up_factor`` to ``scale_factor``.
_SAPA_BASE_ARGUMENTS = dict(SAPA_COMMON_ARGUMENTS, scale_factor='scale_factor')


def sapa_arguments_to_ours(official: str, kwargs: dict, table: Mapping[str, str]) -> dict:
    """Rename the official constructor arguments; ``dim_x`` defaults to ``dim_y`` as upstream."""
    refuse_unknown_arguments(official, kwargs, table)
    if 'dim_y' not in kwargs:
        raise TypeError(f'{official} needs dim_y (the guide channels), got kwargs {kwargs}')
    if 'up_factor' in kwargs and 'scale_factor' in kwargs:
        raise TypeError(f'{official}: pass up_factor or scale_factor, not both')
    ours = {table[name]: value for name, value in kwargs.items()}
    if ours.get('in_channels') is None:
        ours['in_channels'] = ours['guide_channels']
    return ours


def _layer_norm_flag(official: str, norm) -> bool:
    """The NeurIPS code takes a norm layer class: LayerNorm, or Identity for none (also accepted
    as True / False or by name, e.g. ``'nn.LayerNorm'``, for kwargs stored without classes)."""
    name = norm.rsplit('.', 1)[-1] if isinstance(norm, str) else None
    if norm is nn.LayerNorm or norm is True or name == 'LayerNorm':
        return True
    if norm is nn.Identity or norm is False or name == 'Identity':
        return False
    raise ValueError(f'{official}: norm must be nn.LayerNorm or nn.Identity (or True / False), '
                     f'got {norm!r}')


def convert_sapa_family(official: str, module: nn.Module,
                        state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    return convert_same_layout(module, state_dict, official, SAPA_INPUT_ROLES)


@register_official('sapa.SAPA')
def convert_sapa(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """NeurIPS SAPA-B (Linear q / k, LayerNorm) -> :class:`SAPAB`."""
    official = 'sapa.SAPA'
    arguments = sapa_arguments_to_ours(official, kwargs, _SAPA_ARGUMENTS)
    if 'norm' in arguments:
        arguments['norm'] = _layer_norm_flag(official, arguments['norm'])
    return convert_sapa_family(official, SAPAB(**arguments), state_dict)


@register_official('sapaexp.SAPAExp')
def convert_sapaexp(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """NeurIPS experimental SAPA -> :class:`SAPAB` (``encoder_only``, ``cat``) or :class:`SAPAG`
    (``gate``)."""
    official = 'sapaexp.SAPAExp'
    arguments = sapa_arguments_to_ours(official, kwargs, _SAPAEXP_ARGUMENTS)
    if 'norm' in arguments:
        arguments['norm'] = _layer_norm_flag(official, arguments['norm'])
    if arguments.get('q_mode') == 'gate':
        del arguments['q_mode']
        module = SAPAG(**arguments)
    else:
        module = SAPAB(**arguments)
    return convert_sapa_family(official, module, state_dict)


@register_official('sapa_base.SAPA')
def convert_sapa_base(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """Journal SAPA-B (1x1 conv q / k, GroupNorm(32)) -> :class:`SAPABase`."""
    official = 'sapa_base.SAPA'
    arguments = sapa_arguments_to_ours(official, kwargs, _SAPA_BASE_ARGUMENTS)
    return convert_sapa_family(official, SAPABase(**arguments), state_dict)
