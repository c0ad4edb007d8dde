"""Converter for the authors' FreqFusion (Linwei-Chen/FreqFusion ``FreqFusion.py``, class
``FreqFusion``; the same class is copied into their SegNeXt and mmdetection folders) ->
:class:`~mmdynup.upsamplers.freqfusion.FreqFusion`.

``FreqFusion(hr_channels, lr_channels, ...)`` has the fine feature first; ours is an upsampler of
the coarse one, so ``lr_channels`` is our ``in_channels`` and ``hr_channels`` our
``guide_channels``. The parameter layout is already ours (``hr_channel_compressor``,
``lr_channel_compressor``, ``content_encoder``, ``content_encoder2``, ``dysampler.*``, buffers
``hamming_lowpass`` / ``hamming_highpass`` / ``dysampler.init_pos``), so the rename table is empty;
the buffers are loaded, not recomputed (the Hamming windows are float32-rounded upstream).

The official forward is ``m(hr_feat, lr_feat) -> (mask_lr, hr_feat_out, lr_feat_up)``; the
conversion's ``official_call`` returns that 3-tuple, computed by :meth:`FreqFusion.fuse`.
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.freqfusion import FreqFusion
from .official import (OfficialConversion, convert_same_layout, register_official,
                       refuse_unknown_arguments)

OFFICIAL = 'FreqFusion.FreqFusion'
#: Official constructor arguments that map one to one onto ours.
_SAME_NAME = ('lowpass_kernel', 'highpass_kernel', 'encoder_kernel', 'encoder_dilation',
              'compressed_channels', 'align_corners', 'upsample_mode', 'feature_resample',
              'feature_resample_group', 'comp_feat_upsample', 'use_high_pass', 'hr_residual',
              'semi_conv', 'hamming_window', 'feature_resample_norm')
#: Official arguments whose only working value is 1 (anything else crashes upstream: a ``.view``
#: in the kernel normaliser or CARAFE's mask-size assert).
_MUST_BE_ONE = ('scale_factor', 'up_group')
#: Stored by the official class but never read.
_NO_EFFECT = ('use_low_pass',)
_ACCEPTED = ('hr_channels', 'lr_channels') + _SAME_NAME + _MUST_BE_ONE + _NO_EFFECT


def freqfusion_arguments(kwargs: dict) -> dict:
    """The official constructor arguments -> ours (an unknown or unusable one is refused).

    The official class swallows unknown keywords (``**kwargs``); here they are an error, so that
    a misspelt switch cannot pass unnoticed.
    """
    refuse_unknown_arguments(OFFICIAL, kwargs, _ACCEPTED)
    missing = [name for name in ('hr_channels', 'lr_channels') if name not in kwargs]
    if missing:
        raise TypeError(f'{OFFICIAL} needs {missing} (its required arguments)')
    for name in _MUST_BE_ONE:
        if kwargs.get(name, 1) != 1:
            raise ValueError(f'{OFFICIAL}: {name}={kwargs[name]!r} is not supported; the '
                             f'official module only runs with {name}=1 (other values crash in '
                             f'its kernel normaliser / CARAFE call)')
    arguments = {name: kwargs[name] for name in _SAME_NAME if name in kwargs}
    return dict(in_channels=kwargs['lr_channels'], guide_channels=kwargs['hr_channels'],
                scale_factor=2, **arguments)


def _official_forward(module: FreqFusion, inputs: Mapping[str, Tensor]):
    return module.fuse(inputs['lr_feat'], inputs['hr_feat'])


@register_official(OFFICIAL)
def convert_freqfusion(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``FreqFusion(**kwargs)`` with ``state_dict`` -> loaded :class:`FreqFusion`."""
    module = FreqFusion(**freqfusion_arguments(kwargs))
    return convert_same_layout(module, state_dict, OFFICIAL,
                               input_roles={'hr_feat': 'guide', 'lr_feat': 'x'},
                               official_call=_official_forward)
