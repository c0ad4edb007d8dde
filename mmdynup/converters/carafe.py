"""mmcv's ``CARAFEPack`` -> :class:`mmdynup.upsamplers.carafe.CARAFE` (same parameter names)."""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.carafe import CARAFE
from .official import OfficialConversion, convert_same_layout, register_official

OFFICIAL_CARAFE = 'mmcv.ops.CARAFEPack'


def carafe_pack_arguments(channels: int, scale_factor: int, up_kernel: int = 5,
                          up_group: int = 1, encoder_kernel: int = 3, encoder_dilation: int = 1,
                          compressed_channels: int = 64) -> dict:
    """``CARAFEPack``'s constructor signature -> our arguments (an unknown name is a TypeError)."""
    return dict(in_channels=channels, scale_factor=scale_factor, up_kernel=up_kernel,
                up_group=up_group, encoder_kernel=encoder_kernel,
                encoder_dilation=encoder_dilation, compressed_channels=compressed_channels)


@register_official(OFFICIAL_CARAFE)
def convert_carafe_pack(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``CARAFEPack(**kwargs)`` with ``state_dict`` -> loaded :class:`CARAFE` (``m(x)``)."""
    module = CARAFE(**carafe_pack_arguments(**kwargs))
    # The layouts coincide: channel_compressor.{weight,bias}, content_encoder.{weight,bias}.
    return convert_same_layout(module, state_dict, OFFICIAL_CARAFE, input_roles={'x': 'x'})
