"""UPerNet decode head for monocular depth: :class:`~mmdynup.seg.UPerHeadWithUpsampler` with the
depth output, ground truth and loss of :class:`~mmdynup.depth.depth_head.DepthHeadMixin`.

Upsampling positions are the segmentation head's: one x2 upsampler per FPN top-down step
(1/32 -> 1/16 -> 1/8 -> 1/4 for a four-stage backbone), guided (FADE, SAPA, ...) by the finer
lateral feature, i.e. the 1x1-projected encoder feature at the target stride; the fusion of the
FPN levels and the final resize of the 1/4 depth to the image stay bilinear unless
``fusion_upsample_cfg`` asks for upsamplers there too.
"""
from __future__ import annotations

from mmseg.registry import MODELS

from ..seg.uper_head import UPerHeadWithUpsampler
from .depth_head import DepthHeadMixin


@MODELS.register_module()
class UPerDepthHeadWithUpsampler(DepthHeadMixin, UPerHeadWithUpsampler):
    """UPerNet depth head: ``UPerHeadWithUpsampler`` features -> ``conv_seg`` (1 channel) ->
    positive activation.

    Args:
        output_activation, min_depth, max_depth, loss_decode: see
            :class:`~mmdynup.depth.depth_head.DepthHeadMixin`.
        upsample_cfg, fusion_upsample_cfg, **kwargs: as
            :class:`~mmdynup.seg.UPerHeadWithUpsampler` (no ``num_classes``: one channel).

    Shapes: multi-level features (B, C_i, H / 2^(i+2), W / 2^(i+2)) -> depth (B, 1, H / 4, W / 4)
    in metres.

    Example:
        >>> import torch
        >>> head = UPerDepthHeadWithUpsampler(upsample_cfg=dict(type='SAPAB'),
        ...                                   in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3],
        ...                                   channels=16, max_depth=10.0)
        >>> feats = [torch.randn(1, c, 32 // 2 ** i, 24 // 2 ** i)
        ...          for i, c in enumerate([8, 16, 32, 64])]
        >>> depth = head(feats)
        >>> depth.shape, bool((depth > 0).all() and (depth < 10).all())
        (torch.Size([1, 1, 32, 24]), True)
    """
