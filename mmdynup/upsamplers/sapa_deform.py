"""SAPA-deform: similarity-aware point affiliation at learned sampling points (journal version of
SAPA, Lu, Liu, Ye, Cao, "On Point Affiliation in Feature Upsampling"; authors' code:
tiny-smart/sapa ``sapa_deform.py``, class ``SAPADeform``).

Instead of SAPA's dense k x k window, every high-resolution pixel attends to ``num_point`` points
per channel group, placed by learned offsets around the centre of its low-resolution parent:

* ``q = q(y)``, ``k = k(x')`` (1x1 convs, ``groups * embedding_dim`` channels cut into ``groups``
  contiguous chunks); ``x'`` is ``x``, or GroupNorm(32)(``x``) with ``norm`` (then ``y`` too);
* ``offset(x')`` (1x1 conv) gives, per group and point, an ``(x, y)`` offset in low-resolution
  pixels: one per high-resolution pixel through pixel shuffle (``high_offset``) or one per
  low-resolution pixel shared by its s x s block;
* logits are the plain dot products of the query chunk with the keys bilinearly sampled at the
  displaced points (zero for every interpolation corner outside the image), softmax over the
  points, and the output of the group is the softmax-weighted sum of the raw ``x`` sampled at the
  same points: :func:`~mmdynup.ops.deformable_attention.local_deformable_attention` with one
  head per group and scale 1 (its fused, memory-lean path on CPU and GPU; the reference under
  ``use_implementation('reference')`` and while exporting).
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple

from torch import Tensor, nn

from ..ops.deformable_attention import local_deformable_attention
from ..ops.point_sampling import subpixel_positions
from ..ops.pointwise import pointwise
from ..registry import register_upsampler
from ..checks import check_bool, check_divisible, check_positive_int
from .base import Upsampler
from .sapa import group_norm_32, guide_query


@register_upsampler
class SAPADeform(Upsampler):
    """SAPA-deform (journal SAPA), guided: ``forward(x, guide) -> (B, C, oH, oW)``.

    Args:
        in_channels: C of the low-resolution ``x`` (official ``dim_x``); divisible by ``groups``.
        scale_factor: s >= 2 (official ``up_factor``; ``scale_factor`` in the authors' forks).
        guide_channels: channels of the high-resolution guide ``y`` (official ``dim_y``; default
            ``in_channels``).
        num_point: sampling points per group and pixel (9).
        groups: channel groups with their own points (4).
        embedding_dim: query / key channels per group (32).
        qkv_bias: bias in the ``q``, ``k`` and ``offset`` convolutions (True).
        high_offset: one offset per high-resolution pixel (pixel shuffle of s^2 times more
            channels) instead of one per low-resolution pixel (True).
        norm: GroupNorm(32) on the guide and on the copy of ``x`` that feeds keys and offsets
            (False); needs both channel counts divisible by 32.

    Shapes: ``x`` (B, C, H, W), ``guide`` (B, guide_channels, oH, oW) -> (B, C, oH, oW).
    Parameters: ``norm_y``, ``norm_x`` (GroupNorm, when ``norm``), ``q``, ``k``, ``offset``.

    Example:
        >>> import torch
        >>> up = SAPADeform(16, scale_factor=2, guide_channels=8)
        >>> up(torch.randn(2, 16, 4, 5), torch.randn(2, 8, 8, 10)).shape
        torch.Size([2, 16, 8, 10])
    """

    requires_guide: ClassVar[bool] = True

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, num_point: int = 9, groups: int = 4,
                 embedding_dim: int = 32, qkv_bias: bool = True, high_offset: bool = True,
                 norm: bool = False) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.num_point = check_positive_int('num_point', num_point)
        self.groups = check_positive_int('groups', groups)
        check_divisible('in_channels', self.in_channels, self.groups, 'groups')
        self.embedding_dim = check_positive_int('embedding_dim', embedding_dim)
        self.qkv_bias = check_bool('qkv_bias', qkv_bias)
        self.high_offset = check_bool('high_offset', high_offset)
        self.norm = check_bool('norm', norm)
        if self.norm:
            self.norm_y = group_norm_32('guide_channels', self.guide_channels)
            self.norm_x = group_norm_32('in_channels', self.in_channels)
        else:
            self.norm_y = self.norm_x = None
        embedding_channels = self.groups * self.embedding_dim
        self.q = nn.Conv2d(self.guide_channels, embedding_channels, 1, bias=qkv_bias)
        self.k = nn.Conv2d(self.in_channels, embedding_channels, 1, bias=qkv_bias)
        offsets_per_pixel = self.scale_factor ** 2 if high_offset else 1
        self.offset = nn.Conv2d(self.in_channels,
                                self.groups * self.num_point * 2 * offsets_per_pixel, 1,
                                bias=qkv_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: conv weights N(0, 0.02), biases 0 (the offset conv's too),
        GroupNorm weight 1 and bias 0."""
        for conv in (self.q, self.k, self.offset):
            nn.init.normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.norm:
            self.norm_y.reset_parameters()
            self.norm_x.reset_parameters()

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, num_point={self.num_point}, groups={self.groups}, '
                f'embedding_dim={self.embedding_dim}, high_offset={self.high_offset}, '
                f'norm={self.norm}')

    def upsample(self, x: Tensor, guide: Tensor, size: Tuple[int, int]) -> Tensor:
        batch, _, height, width = x.shape
        s, groups, points = self.scale_factor, self.groups, self.num_point
        x_normed = self.norm_x(x) if self.norm else x
        # The 1x1 convolutions as batched matrix products (ops/pointwise.py): no reordered
        # copies of the full-resolution guide, forward or backward.
        queries = (pointwise(guide, self.q)[0] if self.norm_y is None
                   else guide_query(guide, self.norm_y, self.q))
        keys, offsets = pointwise(x_normed, self.k, self.offset)
        # Offset channels are ordered (group, point, component[, row a, column b]); arrange them
        # as (B, G, P, H, s or 1, W, s or 1, 2) views for subpixel_positions.
        if self.high_offset:
            offsets = offsets.reshape(batch, groups, points, 2, s, s, height, width)
            offsets = offsets.permute(0, 1, 2, 6, 4, 7, 5, 3)
        else:
            offsets = offsets.reshape(batch, groups, points, 2, height, 1, width, 1)
            offsets = offsets.permute(0, 1, 2, 4, 5, 6, 7, 3)
        positions = subpixel_positions(offsets, s, size)  # (B, G, P, oH, oW, 2)
        # One attention head per group, plain dot products (scale 1), zero padding.
        return local_deformable_attention(queries, keys, x, positions, groups, 1.0)
