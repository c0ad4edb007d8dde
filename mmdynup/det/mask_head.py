"""mmdet's Mask R-CNN mask head (``FCNMaskHead``) upsampling with any mmdynup upsampler.

``FCNMaskHead`` (He et al., ICCV 2017) runs four 3x3 convs on the 14 x 14 RoI feature, upsamples
it 2x with a stride-2 deconvolution (then ReLU) and predicts 28 x 28 mask logits with a 1x1 conv.
mmdet's CARAFE configs replace the deconvolution by CARAFE (``upsample_cfg=dict(type='carafe',
...)``, Wang et al., ICCV 2019: +1.1 mask AP in the paper). :class:`FCNMaskHeadWithUpsampler`
subclasses ``FCNMaskHead`` (its constructor builds the convs and the predictor) and puts any
registered upsampler in that place.

The guide. A mask head has no feature at its output resolution: its only input is the RoI
feature, pooled at 14 x 14. CARAFE, DySample and the other unguided operators need none (mmdet's
CARAFE mask head is unguided). A guided operator (FADE, SAPA) is guided by the head's own feature
enlarged by nearest interpolation, so its kernels come from low-resolution content only: FADE's
gate then blends nearest upsampling with its reassembly, SAPA's query is each pixel's parent.
That is our choice (no paper evaluates these operators in the mask head); a guide with real
high-resolution detail would need a second, finer RoI feature, which mmdet's RoI head does not
extract.
"""
from __future__ import annotations

from typing import Mapping

import torch.nn.functional as F
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS
from torch import Tensor

from ..upsamplers.host_config import build_head_upsampler
from .mmcv_upsample_cfg import from_mmcv_upsample_cfg

OWNER = 'FCNMaskHeadWithUpsampler'


@MODELS.register_module()
class FCNMaskHeadWithUpsampler(FCNMaskHead):
    """``FCNMaskHead`` whose 2x upsampling is ``upsample_cfg`` (any mmdynup upsampler).

    Args:
        upsample_cfg: an mmdynup upsampler config with an optional ``scale_factor`` (default 2),
            e.g. ``dict(type='DySample', groups=4)``; or mmdet's CARAFE form
            ``dict(type='carafe', scale_factor=2, up_kernel=5, ..., compressed_channels=64)``.
            mmdet's ``'deconv'`` (kernel = stride = s, then ReLU) is ``FCNMaskHead``'s own and
            refused here; ``DeconvUpsample`` is the transposed convolution without the ReLU.
        **kwargs: as ``FCNMaskHead`` (``num_convs``, ``in_channels``, ``conv_out_channels``,
            ``num_classes``, ``loss_mask``, ...).

    The upsampler runs at the last conv's width (``conv_out_channels``, or ``in_channels``
    without convs), keeps its own initialisation (``FCNMaskHead.init_weights`` re-initialises only
    mmcv layers and the predictor) and feeds ``conv_logits`` directly, as mmdet's CARAFE head.

    Shapes: RoI features (N, in_channels, h, w) -> mask logits (N, num_classes, s h, s w).

    Example:
        >>> import torch
        >>> head = FCNMaskHeadWithUpsampler(num_classes=3, in_channels=16, conv_out_channels=16,
        ...                                 upsample_cfg=dict(type='DySample'))
        >>> head(torch.randn(2, 16, 14, 14)).shape
        torch.Size([2, 3, 28, 28])
    """

    def __init__(self, *, upsample_cfg: Mapping = dict(type='CARAFE', scale_factor=2),
                 **kwargs) -> None:
        if not isinstance(upsample_cfg, Mapping):
            raise TypeError(f'{OWNER}: upsample_cfg must be a dict such as dict(type="CARAFE"), '
                            f'got {upsample_cfg!r} ({type(upsample_cfg).__name__})')
        if upsample_cfg.get('type') == 'deconv':
            raise ValueError(f'{OWNER}: upsample_cfg.type="deconv" is FCNMaskHead\'s own '
                             f'(kernel = stride = scale_factor, then ReLU): use '
                             f'type="FCNMaskHead" for it, or type="DeconvUpsample" here')
        cfg = from_mmcv_upsample_cfg(upsample_cfg, OWNER)
        scale_factor = cfg.pop('scale_factor', 2)
        # mmdet builds the convs and a predictor for an upsampler that keeps the width.
        super().__init__(upsample_cfg=dict(type=None), **kwargs)
        channels = self.conv_out_channels if self.num_convs > 0 else self.in_channels
        self.upsample_cfg = dict(cfg, scale_factor=scale_factor)
        self.upsample_method = cfg['type']
        self.scale_factor = scale_factor
        self.upsample = build_head_upsampler(cfg, 'upsample_cfg', OWNER, in_channels=channels,
                                             guide_channels=channels, scale_factor=scale_factor)

    def forward(self, x: Tensor) -> Tensor:
        """RoI features (N, C, h, w) -> mask logits (N, num_classes or 1, s h, s w)."""
        for conv in self.convs:
            x = conv(x)
        if x.shape[0] == 0:  # no positive RoI in the batch: nothing to upsample, keep the shape
            return self.conv_logits(F.interpolate(x, scale_factor=self.scale_factor))
        # The head has no finer feature: guided operators read their own input, enlarged.
        guide = (F.interpolate(x, scale_factor=self.scale_factor, mode='nearest')
                 if self.upsample.requires_guide else None)
        return self.conv_logits(self.upsample(x, guide=guide))


__all__ = ['FCNMaskHeadWithUpsampler']
