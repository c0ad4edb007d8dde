"""mmdet's path-aggregation necks with any mmdynup upsampler in their top-down paths.

Three hosts, each a subclass whose constructor builds every conv of the mmdet neck; only the
top-down upsampling changes (the bottom-up path, the CSP blocks and the output convs are mmdet's):

* ``PAFPN`` (Liu et al., "Path Aggregation Network for Instance Segmentation", CVPR 2018): an
  FPN top-down path, ``lateral[i - 1] + up(lateral[i])``, then a bottom-up path. The merge is
  additive, as in FPN, so it goes through :meth:`Upsampler.merge` (guided operators read the
  finer lateral before the addition) and the extra levels are mmdet's (:func:`extra_levels`).
* ``YOLOXPAFPN`` (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv 2107.08430) and
  ``CSPNeXtPAFPN`` (Lyu et al., "RTMDet", arXiv 2212.07784): the coarser level is reduced by a
  1x1 conv to the finer level's width, upsampled, and *concatenated* with the finer backbone
  feature, ``block(cat([up(reduce(coarser)), finer]))``. Here ``up`` is
  :meth:`Upsampler.upsample_like` at the width of the reduced feature, ``in_channels[l - 1]``;
  guided operators are guided by the finer backbone feature (``in_channels[l - 1]`` channels).

``upsample_cfg=None`` is nearest interpolation to the finer level's size: with the same weights
the necks equal mmdet's wherever mmdet's run (for YOLOX / RTMDet: pyramids exactly 2x apart).
mmdet's own ``F.interpolate`` form, ``dict(scale_factor=2, mode='nearest')`` (the YOLOX / RTMDet
default), is accepted as it is (:func:`~mmdynup.det.fpn.upsampler_config`).
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Tuple

import torch
from mmdet.models.necks import PAFPN, CSPNeXtPAFPN, YOLOXPAFPN
from mmdet.registry import MODELS
from torch import Tensor

from .fpn import TopDownUpsamplers, check_fpn_arguments, extra_levels, upsampler_config


def check_levels(owner: str, inputs, in_channels) -> None:
    if len(inputs) != len(in_channels):
        raise ValueError(f'{owner} got {len(inputs)} input levels but was built with '
                         f'in_channels={list(in_channels)} ({len(in_channels)} levels); pass one '
                         f'feature map per entry of in_channels')


@MODELS.register_module()
class PAFPNWithUpsampler(TopDownUpsamplers, PAFPN):
    """PAFPN whose FPN top-down path upsamples with ``upsample_cfg`` (any mmdynup upsampler).

    One upsampler per top-down step, ``upsamplers[i - 1]`` merging level ``i`` into ``i - 1``, all
    at ``out_channels``, as :class:`~mmdynup.det.fpn.FPNWithUpsampler`.

    Args:
        in_channels, out_channels, num_outs, **pafpn_kwargs: as mmdet's ``PAFPN`` (keywords).
        upsample_cfg: upsampler config without ``in_channels`` / ``scale_factor`` /
            ``guide_channels``, e.g. ``dict(type='DySample')``; ``None``: nearest, mmdet's PAFPN.
        upsampler_init: ``'neck'`` (the neck's Xavier init also over the upsamplers) or
            ``'own'`` (each upsampler keeps its paper's init).

    Shapes: ``len(in_channels)`` maps (B, in_channels[l], H_l, W_l) -> ``num_outs`` maps
    (B, out_channels, ., .), the first ones of the lateral sizes.

    Example:
        >>> import torch
        >>> neck = PAFPNWithUpsampler([8, 16, 32], 16, 4, upsample_cfg=dict(type='DySample'))
        >>> feats = [torch.randn(1, c, s, s) for c, s in zip([8, 16, 32], [25, 13, 7])]
        >>> [tuple(out.shape[-2:]) for out in neck(tuple(feats))]
        [(25, 25), (13, 13), (7, 7), (4, 4)]
    """

    def __init__(self, in_channels: List[int], out_channels: int, num_outs: int, *,
                 upsample_cfg: Optional[Mapping] = None, upsampler_init: str = 'neck',
                 **pafpn_kwargs) -> None:
        owner = type(self).__name__
        check_fpn_arguments(in_channels, num_outs, pafpn_kwargs.get('start_level', 0),
                            pafpn_kwargs.get('end_level', -1),
                            pafpn_kwargs.get('add_extra_convs', False), owner=owner)
        cfg = upsampler_config(upsample_cfg, owner)
        super().__init__(in_channels, out_channels, num_outs, **pafpn_kwargs)
        self.build_upsamplers(cfg, upsampler_init, len(self.lateral_convs) - 1, out_channels)

    def forward(self, inputs: Tuple[Tensor, ...]) -> tuple:
        """(B, in_channels[l], H_l, W_l) per level -> ``num_outs`` maps (B, out_channels, ., .)."""
        check_levels(type(self).__name__, inputs, self.in_channels)
        laterals = [conv(inputs[index + self.start_level])
                    for index, conv in enumerate(self.lateral_convs)]
        laterals = self.top_down(laterals)
        inter_outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        # Bottom-up path augmentation: each level adds the stride-2 conv of the finer one.
        for level, downsample in enumerate(self.downsample_convs):
            inter_outs[level + 1] = inter_outs[level + 1] + downsample(inter_outs[level])
        outs = [inter_outs[0]] + [conv(out) for conv, out in zip(self.pafpn_convs,
                                                                  inter_outs[1:])]
        return extra_levels(self, inputs, laterals, outs)


class ConcatenatingTopDown(TopDownUpsamplers):
    """The YOLOX / RTMDet neck with learned upsampling: ``upsamplers[j]`` upsamples the reduced
    coarser feature of top-down step ``j`` (coarsest step first, the order of mmdet's
    ``reduce_layers`` and ``top_down_blocks``) at ``in_channels[-2 - j]`` channels, guided by the
    finer backbone feature of that width. Mixed in before the mmdet neck class.

    Args:
        in_channels, out_channels, **neck_kwargs: as the mmdet neck (``num_csp_blocks``,
            ``use_depthwise``, ``norm_cfg``, ``act_cfg``, ``init_cfg``, ...).
        upsample_cfg: upsampler config without ``in_channels`` / ``scale_factor`` /
            ``guide_channels``, e.g. ``dict(type='DySample')``; ``None``: nearest to the finer
            level's size; mmdet's ``F.interpolate`` form ``dict(scale_factor=2, mode='nearest')``
            is mmdet's ``nn.Upsample`` exactly.
        upsampler_init: ``'neck'`` (the neck's Kaiming init also over the upsamplers) or
            ``'own'`` (each upsampler keeps its paper's init).

    Shapes: ``len(in_channels)`` maps (B, in_channels[l], H_l, W_l), each coarser level at least
    half its finer neighbour -> one map (B, out_channels, H_l, W_l) per level.
    """

    def __init__(self, in_channels: List[int], out_channels: int, *,
                 upsample_cfg: Optional[Mapping] = None, upsampler_init: str = 'neck',
                 **neck_kwargs) -> None:
        owner = type(self).__name__
        if not isinstance(in_channels, (list, tuple)) or len(in_channels) < 2:
            raise TypeError(f'{owner}: in_channels must be a list of at least two ints '
                            f'(channels per backbone level), got {in_channels!r}')
        cfg = upsampler_config(upsample_cfg, owner)
        super().__init__(in_channels, out_channels, upsample_cfg=dict(scale_factor=2),
                         **neck_kwargs)
        del self.upsample  # mmdet's nn.Upsample: replaced by the upsamplers
        widths = [in_channels[level - 1] for level in range(len(in_channels) - 1, 0, -1)]
        self.build_upsamplers(cfg, upsampler_init, len(widths), widths)

    def forward(self, inputs: Tuple[Tensor, ...]) -> tuple:
        """(B, in_channels[l], H_l, W_l) per level -> (B, out_channels, H_l, W_l) per level."""
        check_levels(type(self).__name__, inputs, self.in_channels)
        levels = len(self.in_channels)
        # Top-down: reduce the coarser level, upsample it onto the finer one, concatenate.
        inner_outs = [inputs[-1]]
        for step, (reduce, block, upsampler) in enumerate(
                zip(self.reduce_layers, self.top_down_blocks, self.upsamplers)):
            finer = inputs[levels - 2 - step]
            inner_outs[0] = reduce(inner_outs[0])
            upsampled = upsampler.upsample_like(inner_outs[0], finer)
            inner_outs.insert(0, block(torch.cat([upsampled, finer], 1)))
        # Bottom-up: mmdet's stride-2 convs and CSP blocks, unchanged.
        outs = [inner_outs[0]]
        for downsample, block, lateral in zip(self.downsamples, self.bottom_up_blocks,
                                              inner_outs[1:]):
            outs.append(block(torch.cat([downsample(outs[-1]), lateral], 1)))
        return tuple(conv(out) for conv, out in zip(self.out_convs, outs))


@MODELS.register_module()
class YOLOXPAFPNWithUpsampler(ConcatenatingTopDown, YOLOXPAFPN):
    """mmdet's ``YOLOXPAFPN`` (YOLOX, arXiv 2107.08430) whose top-down path upsamples with
    ``upsample_cfg``; see :class:`ConcatenatingTopDown` for the arguments and shapes.

    Example:
        >>> import torch
        >>> neck = YOLOXPAFPNWithUpsampler([8, 16, 32], 8, num_csp_blocks=1,
        ...                                upsample_cfg=dict(type='DySample', groups=4))
        >>> feats = [torch.randn(1, c, s, s) for c, s in zip([8, 16, 32], [25, 13, 7])]
        >>> [tuple(out.shape) for out in neck(tuple(feats))]
        [(1, 8, 25, 25), (1, 8, 13, 13), (1, 8, 7, 7)]
    """


@MODELS.register_module()
class CSPNeXtPAFPNWithUpsampler(ConcatenatingTopDown, CSPNeXtPAFPN):
    """mmdet's ``CSPNeXtPAFPN`` (RTMDet, arXiv 2212.07784) whose top-down path upsamples with
    ``upsample_cfg``; see :class:`ConcatenatingTopDown` for the arguments and shapes."""


__all__ = ['PAFPNWithUpsampler', 'YOLOXPAFPNWithUpsampler', 'CSPNeXtPAFPNWithUpsampler',
           'ConcatenatingTopDown']
