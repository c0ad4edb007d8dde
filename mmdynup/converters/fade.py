"""The authors' FADE modules (root ``FADE_L2H.py`` / ``FADE_H2L.py`` of poppinace/fade) -> mmdynup.

``FADE_L2H.{FADE, FADELite, SemiShiftUp}`` share our layout (``gate_generator.conv``,
``ker_generator.{compressor_en, compressor_de, content_encoder}``); the conference
``FADE_H2L.FADE`` names its kernel generator
``kernel_generator.{conv1_en, conv1_de, conv2_kernels, conv2_bias}``, renamed below. The official
forward is ``m(en, de)``: ``en`` is our ``guide``, ``de`` our ``x``.

The third-party port ``pytorch_implementation/FADE_H2L.py`` (records named
``'FADE_H2L.FADE (pure PyTorch)'``) computes another function than the authors' file and has no
converter: its weights would load but not compute what they were trained for (see
:class:`~mmdynup.upsamplers.fade.FADEECCV`).
"""
from __future__ import annotations

from typing import Mapping, Optional

from torch import Tensor

from ..upsamplers.fade import FADE, FADEECCV, FADELite, SemiShiftUp
from .official import OfficialConversion, load_converted, register_official, rename_keys

FADE_INPUT_ROLES = {'en': 'guide', 'de': 'x'}

ECCV_RENAMES = (
    ('kernel_generator.conv1_en', 'ker_generator.compressor_en'),
    ('kernel_generator.conv1_de', 'ker_generator.compressor_de'),
    ('kernel_generator.conv2_kernels', 'ker_generator.content_encoder.weight'),
    ('kernel_generator.conv2_bias', 'ker_generator.content_encoder.bias'),
)

#: official string -> (our class, state_dict renames)
OFFICIAL_FADE = {
    'FADE_L2H.FADE': (FADE, ()),
    'FADE_L2H.FADELite': (FADELite, ()),
    'FADE_L2H.SemiShiftUp': (SemiShiftUp, ()),
    'FADE_H2L.FADE': (FADEECCV, ECCV_RENAMES),
}


def fade_arguments(in_channels_en: int, in_channels_de: Optional[int] = None, scale: int = 2,
                   up_kernel_size: int = 5) -> dict:
    """The official FADE constructors' signature (all four classes) -> our arguments.

    ``FADE_H2L.FADE`` asserts nothing about ``scale`` but only runs at 2; FADEECCV refuses others.
    """
    return dict(guide_channels=in_channels_en,
                in_channels=in_channels_en if in_channels_de is None else in_channels_de,
                scale_factor=scale, up_kernel_size=up_kernel_size)


def convert_fade_module(official: str, kwargs: dict, state_dict: Mapping[str, Tensor],
                        ) -> OfficialConversion:
    """Build our class for ``official`` from its kwargs and load the renamed ``state_dict``."""
    cls, renames = OFFICIAL_FADE[official]
    module = cls(**fade_arguments(**kwargs))
    renamed, official_names = rename_keys(state_dict, renames)
    load_converted(module, renamed, official)
    return OfficialConversion(module, official_names, input_roles=dict(FADE_INPUT_ROLES))


@register_official('FADE_L2H.FADE')
def convert_fade(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    return convert_fade_module('FADE_L2H.FADE', kwargs, state_dict)


@register_official('FADE_L2H.FADELite')
def convert_fade_lite(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    return convert_fade_module('FADE_L2H.FADELite', kwargs, state_dict)


@register_official('FADE_L2H.SemiShiftUp')
def convert_semi_shift_up(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    return convert_fade_module('FADE_L2H.SemiShiftUp', kwargs, state_dict)


@register_official('FADE_H2L.FADE')
def convert_fade_eccv(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    return convert_fade_module('FADE_H2L.FADE', kwargs, state_dict)
