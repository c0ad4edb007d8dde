"""mmdet's ``FPN_CARAFE`` topology with any mmdynup upsampler in its top-down path.

``FPN_CARAFE`` (mmdet, ``mmdet/models/necks/fpn_carafe.py``; written for CARAFE, Wang et al.,
ICCV 2019) differs from mmdet's ``FPN`` in where its extra level comes from: a 3x3 stride-2 conv
on the last backbone map (C5) is an extra *lateral* (P6), which then enters the top-down path
through one more upsampler. With four backbone levels and ``num_outs=5`` it has five laterals,
four upsamplers and five 3x3 output convs, and no max-pooled level::

    lateral[i] = conv1x1_i(C_i)   (i < 4),   lateral[4] = conv3x3_stride2(C5)
    lateral[i - 1] <- merge(lateral[i], lateral[i - 1])      i = 4, ..., 1
    P_i = conv3x3_i(lateral[i])

This is the neck whose parameter counts the DySample paper reports (Faster R-CNN R50 46.8M with
nearest; four upsamplers, e.g. +32.7K = 4 x 8,192 for DySample) and behind mmdet's own CARAFE
results. :class:`FPNCARAFEWithUpsampler` subclasses ``FPN_CARAFE``: mmdet's constructor builds
every conv (its parameter-free nearest upsamplers are replaced by ours); ``forward`` runs the
merges through :meth:`mmdynup.upsamplers.base.Upsampler.merge`.

``FPN_CARAFE`` adds ``upsample(coarser)`` sliced to the finer size (``tensor_add``). The merge does
the same for every learned upsampler (the top-left window of the 2x output) and for nearest
interpolation (at sizes ``2h`` or ``2h - 1``, resampling to the size picks the same pixels);
bilinear interpolation resamples to the exact size instead, which differs from slicing only where
a level is not exactly twice the next (e.g. the stride-2 P6 of an odd C5).
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

from mmdet.models.necks import FPN_CARAFE
from mmdet.registry import MODELS
from torch import Tensor

from .fpn import TopDownUpsamplers, check_fpn_arguments, upsampler_config
from .mmcv_upsample_cfg import from_mmcv_upsample_cfg

#: ``FPN_CARAFE``'s default ``upsample_cfg`` (mmcv's CARAFEPack with 64 compressed channels).
MMDET_CARAFE = dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1)
OWNER = 'FPNCARAFEWithUpsampler'


@MODELS.register_module()
class FPNCARAFEWithUpsampler(TopDownUpsamplers, FPN_CARAFE):
    """``FPN_CARAFE`` whose top-down upsamplers are any mmdynup upsampler (``upsample_cfg``).

    One upsampler per top-down step, including the step from the extra level(s):
    ``upsamplers[i - 1]`` merges lateral ``i`` into lateral ``i - 1``; all are built at
    ``out_channels``, guided ones (FADE, SAPA) guided by the finer lateral before the addition.

    Args:
        in_channels, out_channels, num_outs, **fpn_carafe_kwargs: as mmdet's ``FPN_CARAFE``
            (``start_level``, ``end_level``, ``norm_cfg``, ``act_cfg``, ``order``; keywords).
        upsample_cfg: an mmdynup upsampler config such as ``dict(type='DySample', groups=4)``
            (the neck sets ``in_channels``, ``guide_channels``, ``scale_factor=2``), or
            ``FPN_CARAFE``'s own mmcv form (``type='carafe'`` with ``up_kernel``, ...,
            ``'nearest'``, ``'bilinear'``, ``'deconv'`` / ``'pixel_shuffle'`` with
            ``upsample_kernel``), which builds our equivalent. Default: ``FPN_CARAFE``'s
            (CARAFE, k_up 5, encoder 3, 64 compressed channels). ``None``: nearest.
        upsampler_init: ``'own'`` (default): ``FPN_CARAFE``'s init, Xavier-uniform over every
            conv, then each upsampler keeps its own initialisation (for CARAFE that is mmcv's
            ``CARAFEPack.init_weights``, which ``FPN_CARAFE`` re-applies; deconv and pixel
            shuffle initialise Xavier themselves). ``'neck'``: Xavier also over the upsamplers'
            convs, as a neck that re-initialises every ``Conv2d`` (the authors' detection fork).

    Shapes: ``inputs`` is a tuple of ``len(in_channels)`` maps (B, in_channels[l], H_l, W_l),
    each finer level at most twice the next coarser one; the output is ``num_outs`` maps
    (B, out_channels, ., .) at the laterals' sizes, the extra ones ``ceil(H / 2)`` each.

    Example:
        >>> import torch
        >>> neck = FPNCARAFEWithUpsampler([8, 16, 32, 64], 16, 5,
        ...                               upsample_cfg=dict(type='DySample'))
        >>> feats = [torch.randn(1, c, s, s) for c, s in zip([8, 16, 32, 64], [94, 47, 24, 12])]
        >>> [tuple(out.shape[-2:]) for out in neck(tuple(feats))]
        [(94, 94), (47, 47), (24, 24), (12, 12), (6, 6)]
        >>> len(neck.upsamplers)
        4
    """

    def __init__(self, in_channels: List[int], out_channels: int, num_outs: int, *,
                 upsample_cfg: Optional[Mapping] = MMDET_CARAFE, upsampler_init: str = 'own',
                 **fpn_carafe_kwargs) -> None:
        check_fpn_arguments(in_channels, num_outs, fpn_carafe_kwargs.get('start_level', 0),
                            fpn_carafe_kwargs.get('end_level', -1), owner=OWNER)
        if fpn_carafe_kwargs.get('init_cfg') is not None:
            raise ValueError(f'{OWNER}: init_cfg={fpn_carafe_kwargs["init_cfg"]!r}; FPN_CARAFE '
                             f'initialises itself (Xavier over every conv) and refuses an '
                             f'init_cfg: remove it (upsampler_init chooses the upsamplers\' init)')
        cfg = from_mmcv_upsample_cfg(upsampler_config(upsample_cfg, OWNER), OWNER)
        # mmdet builds the convs; its parameter-free nearest layers give way to our upsamplers.
        super().__init__(in_channels, out_channels, num_outs,
                         upsample_cfg=dict(type='nearest'), **fpn_carafe_kwargs)
        del self.upsample_modules
        self.upsample = cfg['type']
        self.build_upsamplers(cfg, upsampler_init, len(self.lateral_convs) - 1, out_channels)

    def laterals(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        """``FPN_CARAFE``'s laterals: a 1x1 conv per used backbone level, then each extra level
        a 3x3 stride-2 conv, the first on the last backbone map, the others on the previous
        extra lateral."""
        laterals = []
        backbone_laterals = self.backbone_end_level - self.start_level
        for index, conv in enumerate(self.lateral_convs):
            if index < backbone_laterals:
                source = inputs[index + self.start_level]
            elif index == backbone_laterals:
                source = inputs[self.backbone_end_level - 1]
            else:
                source = laterals[-1]
            laterals.append(conv(source))
        return laterals

    def forward(self, inputs: Tuple[Tensor, ...]) -> tuple:
        """(B, in_channels[l], H_l, W_l) per level -> ``num_outs`` maps (B, out_channels, ., .)."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'{OWNER} got {len(inputs)} input levels but was built with '
                             f'in_channels={self.in_channels} ({len(self.in_channels)} levels)')
        merged = self.top_down(self.laterals(inputs))
        return tuple(conv(lateral) for conv, lateral in zip(self.fpn_convs, merged))


__all__ = ['FPNCARAFEWithUpsampler', 'MMDET_CARAFE']
