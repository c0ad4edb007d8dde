"""A BTS / DenseDepth-style depth decoder: x2 stages with skip concatenation from the coarsest
encoder feature up to the finest one, then x2 interpolation steps to full resolution, each stage
upsampling with any registered upsampler.

Layout (BTS, Lee et al., arXiv 1907.10326, and DenseDepth, Alhashim & Wonka, arXiv 1812.11941;
the depth toolbox zhyever/Monocular-Depth-Estimation-Toolbox ``BTSHead`` / ``DenseDepthHead``).
With encoder features e_0..e_{L-1}, finest first (ResNet-50 with its stem: strides 2, 4, 8, 16,
32 and 64, 256, 512, 1024, 2048 channels), the decoder runs, coarsest first,

    x = e_{L-1}
    stage i = L-2 .. 0:   x = convs_i(cat[e_i, up_i(x, guide=e_i)])       (to stage_channels[i])
    then log2(input_stride) steps:   x = conv(interpolate_x2(x))         (to channels)
    depth = activation(conv_seg(x))

**Upsampling positions.** ``up_i`` is the upsampler of ``upsample_cfg`` (``None``: nearest
interpolation, BTS's ``upconv``), one per skip stage, built with ``in_channels`` = the width of
``x`` (e_{L-1}, then ``stage_channels[i + 1]``), ``guide_channels`` = the skip's channels and
``scale_factor=2``; guided operators (FADE, SAPA, ...) are guided by the raw encoder feature e_i
at the target stride, the skip it is then concatenated with. The merge goes through the
upsampler's ``merge_concatenated`` seam, so an operator that also transforms the skip
(FreqFusion) does so without this head branching on it. Operators that blend the guide and
``x`` channel by channel (FADE's gate, SAPA-I, IndexNet's depthwise blocks) need equal widths:
``lateral_channels`` then projects each skip with a 1x1 ConvModule first (UPerNet's laterals),
and the projected skip is both the guide and the concatenated feature. The final steps to full resolution have
no encoder feature to guide them and stay interpolation (``interpolate_mode``), as BTS's last
``upconv`` does.

These are the positions of SAPA's BTS-R50 NYU runs (poppinace/sapa README): its added parameters
(CARAFE +0.41M, SAPA-B +0.16M) are those of one operator at each of the four skip stages 1/32 ->
1/16 -> 1/8 -> 1/4 -> 1/2 with BTS's widths (x: 2048, 512, 128, 128; guides: 1024, 512, 256, 64),
``stage_channels=[64, 128, 128, 512]``; a test recomputes them. Unlike BTS there are no local
planar guidance layers and no dense ASPP at 1/8: each stage is ``num_convs`` 3x3 ConvModules
(DenseDepth's fusion block), see ``configs/depth/README.md``.
"""
from __future__ import annotations

import math
from typing import List, Mapping, Optional, Sequence

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..checks import check_positive_int
from ..upsamplers.host_config import build_head_upsampler
from .depth_head import DepthHeadMixin


class InterpolationMerge(nn.Module):
    """``cat([finer, interpolate(coarser, size=finer)])``: the skip merge without an upsampler
    (BTS's nearest ``upconv``, DenseDepth's bilinear), the default of every stage."""

    def __init__(self, mode: str = 'nearest', align_corners: Optional[bool] = None) -> None:
        super().__init__()
        self.mode = mode
        self.align_corners = align_corners

    def extra_repr(self) -> str:
        return f'mode={self.mode!r}'

    def merge_concatenated(self, coarser: Tensor, finer: Tensor) -> Tensor:
        upsampled = resize(coarser, size=finer.shape[2:], mode=self.mode,
                           align_corners=self.align_corners)
        return torch.cat([finer, upsampled], dim=1)


@MODELS.register_module()
class SkipConcatDepthHead(DepthHeadMixin, BaseDecodeHead):
    """BTS / DenseDepth-style skip-concatenation depth decoder with any upsampler (module
    docstring: which positions upsample and with which guide).

    Args:
        in_channels: channels of the encoder features, finest first (L >= 2 of them, each
            stride twice the previous).
        channels: width of the full-resolution steps and of ``conv_seg``'s input (BTS: 32).
        stage_channels: width after fusing skip i, finest first (L - 1 values; BTS-R50:
            ``[64, 128, 128, 512]``).
        upsample_cfg: upsampler of every skip stage (``dict(type='SAPAG')``); ``None``:
            ``interpolate_mode`` interpolation.
        input_stride: stride of the finest feature; ``log2(input_stride)`` x2 interpolation
            steps bring the decoder to full resolution (2 for a ResNet with its stem, 4 for
            stage features only, 1 for none).
        lateral_channels: ``None`` (BTS, DenseDepth): the raw encoder features are the skips;
            else one width per skip (L - 1, finest first) for a 1x1 ConvModule projection of
            each (set it to the widths of ``x`` entering each stage for operators that need
            ``guide_channels == in_channels``).
        num_convs: 3x3 ConvModules per skip stage (DenseDepth: 2, BTS: 1).
        interpolate_mode: interpolation of the default merges and of the full-resolution steps.
        output_activation, min_depth, max_depth, loss_decode: see
            :class:`~mmdynup.depth.depth_head.DepthHeadMixin`.
        **kwargs: ``BaseDecodeHead`` arguments (``in_index``, ``norm_cfg``, ``act_cfg``,
            ``dropout_ratio`` (default 0 here), ``align_corners``, ``init_cfg``).

    Shapes: L features (B, in_channels[i], H_i, W_i), H_i = ceil(H / (input_stride 2^i)) ->
    depth (B, 1, input_stride H_0, input_stride W_0) in metres (the loss and ``predict`` resize
    it to the ground truth / input size).

    Example:
        >>> import torch
        >>> head = SkipConcatDepthHead(in_channels=[4, 8, 16], channels=4, stage_channels=[8, 8],
        ...                            upsample_cfg=dict(type='DySample'), input_stride=2)
        >>> feats = [torch.randn(1, c, 24 // 2 ** i, 20 // 2 ** i) for i, c in
        ...          enumerate([4, 8, 16])]
        >>> head(feats).shape
        torch.Size([1, 1, 48, 40])
    """

    def __init__(self, in_channels: Sequence[int], channels: int,
                 stage_channels: Sequence[int], upsample_cfg: Optional[Mapping] = None,
                 input_stride: int = 2, lateral_channels: Optional[Sequence[int]] = None,
                 num_convs: int = 2, interpolate_mode: str = 'nearest', **kwargs) -> None:
        owner = type(self).__name__
        if not isinstance(in_channels, (list, tuple)) or len(in_channels) < 2:
            raise ValueError(f'{owner}: in_channels must list the channels of >= 2 encoder '
                             f'features, finest first, got {in_channels!r}')
        if not isinstance(stage_channels, (list, tuple)) or \
                len(stage_channels) != len(in_channels) - 1:
            raise ValueError(f'{owner}: stage_channels must give one width per skip stage '
                             f'({len(in_channels) - 1} for in_channels={list(in_channels)}), got '
                             f'{stage_channels!r}')
        if lateral_channels is not None and (not isinstance(lateral_channels, (list, tuple))
                                             or len(lateral_channels) != len(in_channels) - 1):
            raise ValueError(f'{owner}: lateral_channels must be None or give one width per '
                             f'skip ({len(in_channels) - 1}, finest first), got '
                             f'{lateral_channels!r}')
        input_stride = check_positive_int('input_stride', input_stride)
        steps = math.log2(input_stride)
        if not steps.is_integer():
            raise ValueError(f'{owner}: input_stride must be a power of 2 (the finest feature '
                             f'reaches full resolution by x2 steps), got {input_stride}')
        kwargs.setdefault('in_index', list(range(len(in_channels))))
        kwargs.setdefault('dropout_ratio', 0.0)
        super().__init__(in_channels=list(in_channels), channels=channels,
                         input_transform='multiple_select', **kwargs)
        self.stage_channels = [check_positive_int('stage_channels', c) for c in stage_channels]
        self.input_stride = input_stride
        self.interpolate_mode = interpolate_mode
        num_convs = check_positive_int('num_convs', num_convs)
        align = None if interpolate_mode == 'nearest' else self.align_corners
        conv = dict(kernel_size=3, padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg)
        coarser_widths = self.stage_channels[1:] + [self.in_channels[-1]]
        if lateral_channels is None:
            self.lateral_convs = None
            skip_widths = self.in_channels[:-1]
        else:
            skip_widths = [check_positive_int('lateral_channels', c) for c in lateral_channels]
            self.lateral_convs = nn.ModuleList(
                ConvModule(c_in, c_out, 1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                           act_cfg=self.act_cfg)
                for c_in, c_out in zip(self.in_channels, skip_widths))
        self.upsamplers = nn.ModuleList()
        self.stage_convs = nn.ModuleList()
        for skip, coarser, width in zip(skip_widths, coarser_widths, self.stage_channels):
            self.upsamplers.append(
                InterpolationMerge(interpolate_mode, align) if upsample_cfg is None else
                build_head_upsampler(upsample_cfg, 'upsample_cfg', owner, in_channels=coarser,
                                     guide_channels=skip))
            self.stage_convs.append(nn.Sequential(*(
                ConvModule(skip + coarser if k == 0 else width, width, **conv)
                for k in range(num_convs))))
        self.full_resolution_convs = nn.ModuleList(
            ConvModule(self.stage_channels[0] if k == 0 else channels, channels, **conv)
            for k in range(int(steps)))
        self._interpolation_align = align

    def _forward_feature(self, inputs: List[Tensor]) -> Tensor:
        """Encoder features, finest first -> decoder feature (B, channels, s H_0, s W_0)."""
        features = self._transform_inputs(inputs)
        x = features[-1]
        skips = features[:-1] if self.lateral_convs is None else \
            [lateral(feature) for lateral, feature in zip(self.lateral_convs, features)]
        for i in range(len(skips) - 1, -1, -1):  # coarsest skip stage first
            x = self.stage_convs[i](self.upsamplers[i].merge_concatenated(x, skips[i]))
        for conv in self.full_resolution_convs:
            x = conv(resize(x, scale_factor=2, mode=self.interpolate_mode,
                            align_corners=self._interpolation_align))
        return x
