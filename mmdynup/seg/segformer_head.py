"""SegFormer's all-MLP decode head with its direct bilinear resizes replaced by guided cascades of
x2 upsamplers, as in FADE (Lu et al., ECCV 2022) and SAPA (Lu et al., NeurIPS 2022).

Widths (authors' code: poppinace/fade ``segformer/segformer_head.py``; SAPA's training logs in
poppinace/sapa ``segformer/*.log``): every stage is first projected to the decoder width
(``embed_dim`` = 256 for MiT-B1 there, mmseg's ``channels`` = 256 here), and all six upsamplers
run at that width; their guides are the projected finer stages. With 4 stages c1..c4 (strides
4..32) and projections _c1.._c4:

    _c4: up0(_c4, guide=_c3) -> up1(., guide=_c2) -> up2(., guide=_c1)    (1/32 -> 1/4)
    _c3: up3(_c3, guide=_c2) -> up4(., guide=_c1)                         (1/16 -> 1/4)
    _c2: up5(_c2, guide=_c1)                                               (1/8  -> 1/4)

Differences from the authors' head, kept on purpose so that ``upsample_cfg=None`` is exactly
mmseg's ``SegformerHead``: the projections are mmseg's 1x1 ``ConvModule`` (conv, BN, ReLU) rather
than NVlabs' ``Linear`` layers, and the fused order is c1..c4 (mmseg) rather than c4..c1 (NVlabs).
"""
from __future__ import annotations

from typing import List, Mapping, Optional

import torch
from mmseg.models.decode_heads import SegformerHead
from mmseg.registry import MODELS
from torch import Tensor

from .pyramid_upsampler import PyramidUpsampler


@MODELS.register_module()
class SegformerHeadWithUpsampler(SegformerHead):
    """mmseg's ``SegformerHead`` whose stages reach 1/4 through ``upsample_cfg`` cascades.

    Args:
        upsample_cfg: the upsampler of every x2 step, e.g. ``dict(type='FADE')``; six are built
            for four stages (``L (L - 1) / 2`` for L stages) with ``in_channels =
            guide_channels = channels``. ``None``: mmseg's direct resize with
            ``interpolate_mode`` (the result is mmseg's ``SegformerHead``, weights and outputs
            alike; the papers' bilinear baseline).
        **kwargs: ``SegformerHead`` arguments (``in_channels``, ``channels``, ...).

    Example:
        >>> import torch
        >>> head = SegformerHeadWithUpsampler(upsample_cfg=dict(type='FADELite'),
        ...                                   in_channels=[8, 16, 32, 64], channels=16,
        ...                                   num_classes=3, in_index=[0, 1, 2, 3])
        >>> feats = [torch.randn(2, c, 32 // 2 ** i, 24 // 2 ** i)
        ...          for i, c in enumerate([8, 16, 32, 64])]
        >>> head(feats).shape
        torch.Size([2, 3, 32, 24])
    """

    def __init__(self, upsample_cfg: Optional[Mapping] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pyramid_upsampler = PyramidUpsampler(
            len(self.in_channels), self.channels, upsample_cfg,
            interpolate_mode=self.interpolate_mode, align_corners=self.align_corners,
            key='upsample_cfg', owner=type(self).__name__)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Stages (B, C_i, H_i, W_i), finest first -> logits (B, num_classes, H_0, W_0)."""
        inputs = self._transform_inputs(inputs)
        projected = [conv(x) for conv, x in zip(self.convs, inputs)]
        fused = self.fusion_conv(torch.cat(self.pyramid_upsampler(projected), dim=1))
        return self.cls_seg(fused)
