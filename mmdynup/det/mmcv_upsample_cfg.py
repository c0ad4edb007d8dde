"""mmcv's upsample-layer configs (the lowercase names of ``mmcv.cnn.build_upsample_layer``) as
mmdynup upsampler configs.

mmdet's ``FPN_CARAFE`` and ``FCNMaskHead`` name their upsampler with mmcv's registry:
``'carafe'`` (``CARAFEPack``), ``'nearest'`` / ``'bilinear'`` (``nn.Upsample``), ``'deconv'``
(``nn.ConvTranspose2d``), ``'pixel_shuffle'`` (``PixelShufflePack``). Our necks and heads read
those configs too, so that mmdet's own configs (``mmdet::carafe/*``) run by changing only the
component ``type``; a config that names a registered mmdynup upsampler passes unchanged.
"""
from __future__ import annotations

from typing import Mapping

#: mmcv name -> (our registered name, the mmcv keys it reads; ours have the same names).
MMCV_UPSAMPLERS = {
    'carafe': ('CARAFE', ('up_kernel', 'up_group', 'encoder_kernel', 'encoder_dilation',
                          'compressed_channels', 'scale_factor')),
    'nearest': ('NearestUpsample', ('scale_factor',)),
    'bilinear': ('BilinearUpsample', ('scale_factor',)),
    'deconv': ('DeconvUpsample', ('upsample_kernel', 'scale_factor')),
    'pixel_shuffle': ('PixelShuffleUpsample', ('upsample_kernel', 'scale_factor')),
}


def from_mmcv_upsample_cfg(cfg: Mapping, owner: str, key: str = 'upsample_cfg') -> dict:
    """``cfg`` with an mmcv ``type`` rewritten to ours (other configs are returned as a copy).

    Args:
        cfg: e.g. ``dict(type='carafe', up_kernel=5, compressed_channels=64)`` (mmdet's
            ``FPN_CARAFE``) or ``dict(type='DySample', groups=4)`` (ours).
        owner: the neck / head reading it, for error messages.
        key: the config key holding it.

    Raises:
        ValueError: for an mmcv config with keys the mmcv layer would not read here (e.g.
            ``channels``, which the neck / head sets), or ``type=None`` (mmdet's "no
            upsampling", which cannot merge levels of different sizes).
    """
    cfg = dict(cfg)
    name = cfg.get('type')
    if name is None and 'type' in cfg:
        raise ValueError(f'{owner}: {key}.type=None (mmdet: no upsampling) cannot merge levels of '
                         f'different sizes; name an upsampler, e.g. dict(type="NearestUpsample")')
    if not isinstance(name, str) or name not in MMCV_UPSAMPLERS:
        return cfg
    ours, arguments = MMCV_UPSAMPLERS[cfg.pop('type')]
    unknown = sorted(set(cfg) - set(arguments))
    if unknown:
        raise ValueError(f'{owner}: {key}=dict(type={name!r}, ...) has {unknown}, which mmcv\'s '
                         f'{name!r} layer does not take here (the neck / head sets the channels); '
                         f'it reads {sorted(arguments)}')
    return dict(type=ours, **cfg)


__all__ = ['MMCV_UPSAMPLERS', 'from_mmcv_upsample_cfg']
