"""UPerNet decode head whose FPN top-down path upsamples with any registered upsampler.

The authors' segmentation fork (tiny-smart/segmentation-with-upsamplers, class
``UPerHead_Upsample``) puts one x2 upsampler in each top-down step of mmseg's ``UPerHead``:

    lateral[i-1] <- lateral[i-1] + up(lateral[i], guide=lateral[i-1])

where the guide (guided operators only: FADE, SAPA) is the finer lateral as the 1x1 lateral conv
(or the PSP module, at the top) produced it, before this addition. Everything else is mmseg's
``UPerHead``; the final resize of levels 1..3 to level 0 before ``fpn_bottleneck`` stays bilinear
unless ``fusion_upsample_cfg`` asks for upsamplers too.
"""
from __future__ import annotations

from typing import List, Mapping, Optional

import torch
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn

from .decode_losses import DEFAULT_LOSS_DECODE, build_decode_losses
from .pyramid_upsampler import PyramidUpsampler
from ..upsamplers.host_config import build_head_upsampler


@MODELS.register_module()
class UPerHeadWithUpsampler(UPerHead):
    """mmseg's ``UPerHead`` with ``upsample_cfg`` in its FPN top-down path.

    Args:
        upsample_cfg: upsampler of every top-down step, e.g. ``dict(type='FADE')``; one is built
            per step (``len(in_channels) - 1``) with ``in_channels = guide_channels =
            channels`` and ``scale_factor=2``. ``None``: mmseg's bilinear ``resize`` (the
            result is mmseg's ``UPerHead``, weights and outputs alike).
        fusion_upsample_cfg: how levels 1..3 reach level 0's size before ``fpn_bottleneck``:
            ``None`` (default, as mmseg and the authors) resizes bilinearly; an upsampler config
            uses x2 cascades guided by the finer FPN outputs
            (:class:`~mmdynup.seg.pyramid_upsampler.PyramidUpsampler`).
        **kwargs: ``UPerHead`` arguments (``pool_scales``, ``in_channels``, ``channels``, ...).

    Inputs whose sizes are not multiples of 32 work with every upsampler: each step upsamples
    to the finer lateral's size (``<= 2 x`` the coarser one).

    Example:
        >>> import torch
        >>> head = UPerHeadWithUpsampler(upsample_cfg=dict(type='DySample'),
        ...                              in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3],
        ...                              channels=16, num_classes=3)
        >>> feats = [torch.randn(1, c, 32 // 2 ** i, 24 // 2 ** i)
        ...          for i, c in enumerate([8, 16, 32, 64])]
        >>> head(feats).shape
        torch.Size([1, 3, 32, 24])
    """

    def __init__(self, upsample_cfg: Optional[Mapping] = None,
                 fusion_upsample_cfg: Optional[Mapping] = None, **kwargs) -> None:
        loss_decode = kwargs.pop('loss_decode', DEFAULT_LOSS_DECODE)
        super().__init__(loss_decode=[], **kwargs)
        owner = type(self).__name__
        self.loss_decode = build_decode_losses(loss_decode, owner)
        if upsample_cfg is None:
            self.upsamplers = None
        else:
            # Step i - 1 takes level i to level i - 1; all steps run at the head's width.
            self.upsamplers = nn.ModuleList(
                build_head_upsampler(upsample_cfg, 'upsample_cfg', owner,
                                     in_channels=self.channels, guide_channels=self.channels)
                for _ in self.lateral_convs)
        self.fusion_upsampler = PyramidUpsampler(
            len(self.in_channels), self.channels, fusion_upsample_cfg,
            interpolate_mode='bilinear', align_corners=self.align_corners,
            key='fusion_upsample_cfg', owner=owner)

    def top_down_step(self, step: int, coarser: Tensor, finer_lateral: Tensor) -> Tensor:
        """Merge level ``step + 1`` (accumulated, (B, C, h, w)) into level ``step`` (its raw
        lateral, (B, C, H, W), also the guide): ``finer + up(coarser)``, (B, C, H, W)."""
        if self.upsamplers is None:
            return finer_lateral + resize(coarser, size=finer_lateral.shape[2:], mode='bilinear',
                                          align_corners=self.align_corners)
        return self.upsamplers[step].merge(coarser, finer_lateral)

    def _forward_feature(self, inputs: List[Tensor]) -> Tensor:
        """Multi-level features (B, C_i, H_i, W_i) -> fused features (B, channels, H_0, W_0)."""
        inputs = self._transform_inputs(inputs)
        laterals = [lateral_conv(inputs[i]) for i, lateral_conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = self.top_down_step(i - 1, laterals[i], laterals[i - 1])
        fpn_outs = [fpn_conv(lateral) for fpn_conv, lateral in zip(self.fpn_convs, laterals)]
        fpn_outs.append(laterals[-1])  # the PSP level enters the fusion without an fpn conv
        fpn_outs = self.fusion_upsampler(fpn_outs)
        return self.fpn_bottleneck(torch.cat(fpn_outs, dim=1))
