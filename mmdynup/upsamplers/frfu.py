"""FRFU: Flexible Receptive Field Upsampling (2025; called RRFU, "Relaxed Receptive Field", in the
authors' experiments; code: yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling ``frfu.py``).

Unguided. From a low-resolution feature x (B, C, H, W) and integer scale s:

1. **Gated offsets** at low resolution: ``o = offset(x) * sigmoid(offset_mask(x))``, two 1x1
   convs with ``2 G s^2`` outputs. Channel ``2 (g s^2 + a s + b) + comp`` is component ``comp``
   (0: x, horizontal; 1: y, vertical; innermost) of group g at high-resolution pixel
   ``(i s + a, j s + b)``, in *high-resolution* pixels.
2. **Resampling**: high-resolution pixel (I, J) of channel group g (contiguous chunks of C / G)
   is a bilinear sample of x at ``((J + 0.5 + o_x) / s, (I + 0.5 + o_y) / s)`` (low-resolution
   pixels, centres at k + 0.5), border-clamped (a point outside takes the edge value and the
   clamped component gets no gradient). Zero offsets give bilinear upsampling
   (``align_corners=False``). Result: r (B, C, sH, sW).
3. **Content-aware k x k filter** at high resolution, from r itself: ``w = softmax(
   sample_kernel(r) * sigmoid(kernel_mask(r)))`` over k^2 taps, one kernel per pixel shared by
   all channels; ``out(c, I, J) = sum_{u, v} w[u k + v](I, J) r(c, I + u - k//2, J + v - k//2)``
   with zero padding (an outside tap keeps its weight and contributes 0).

Step 2 runs through :func:`~mmdynup.ops.point_sampling.point_sample`, step 3 through the
local-filter fast path (:func:`~mmdynup.ops.local_filter.local_filter`): no unfold of the k^2
window tensor. Each pair of 1x1 convs reading the same map runs as one matrix product
(:func:`~mmdynup.ops.pointwise.pointwise`).

With ``size`` smaller than s x the input (odd FPN levels) the s x output is computed and its
top-left window kept (the convention of :mod:`mmdynup.upsamplers.base`): the filter still reads
the neighbours just outside the window; only the kept pixels' kernels are computed.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor, nn

from ..ops.local_filter import local_filter
from ..ops.pointwise import pointwise
from ..ops.point_sampling import pixel_centres, point_sample
from ..registry import register_upsampler
from .base import Upsampler, check_divisible, check_positive_int, crop_to

#: Standard deviations of the authors' normal init (``frfu.py``; also their SegFormer copy).
OFFSET_STD = 0.001
SAMPLE_KERNEL_STD = 0.005


@register_upsampler
class FRFU(Upsampler):
    """FRFU (2025), unguided: ``forward(x) -> (B, C, s * H, s * W)``.

    Parameter names are the authors' (``offset``, ``offset_mask``, ``sample_kernel``,
    ``kernel_mask``: the two ``*_mask`` convs are the sigmoid gates), so their checkpoints load
    without renames.

    Args:
        in_channels: C of ``x``; divisible by ``groups``.
        scale_factor: s, any integer >= 1 (s = 1 is a resampling plus filter at the same size).
        guide_channels: ignored (unguided); accepted so that one config fits every upsampler.
        groups: G channel groups, each resampled with its own offsets.
        sample_k: k, the odd size of the content-aware filter (1 disables it).

    Example:
        >>> up = FRFU(64, scale_factor=2)
        >>> up(torch.randn(2, 64, 13, 10)).shape
        torch.Size([2, 64, 26, 20])
    """

    requires_guide: ClassVar[bool] = False
    minimum_scale_factor: ClassVar[int] = 1

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, groups: int = 4,
                 sample_k: int = 3) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.groups = check_positive_int('groups', groups)
        check_divisible('in_channels', self.in_channels, self.groups, 'groups')
        self.sample_k = check_positive_int('sample_k', sample_k)
        if self.sample_k % 2 == 0:
            raise ValueError(f'sample_k must be odd (the k x k filter is centred on each output '
                             f'pixel), got {self.sample_k}; use {self.sample_k - 1} or '
                             f'{self.sample_k + 1}')
        offset_channels = 2 * self.groups * self.scale_factor ** 2
        taps = self.sample_k ** 2
        self.offset = nn.Conv2d(self.in_channels, offset_channels, 1)
        self.offset_mask = nn.Conv2d(self.in_channels, offset_channels, 1)
        self.sample_kernel = nn.Conv2d(self.in_channels, taps, 1)
        self.kernel_mask = nn.Conv2d(self.in_channels, taps, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: ``offset`` N(0, 0.001), ``sample_kernel`` N(0, 0.005), both gate
        weights 0, every bias 0 (each gate starts at 0.5, the kernel near a k x k box)."""
        nn.init.normal_(self.offset.weight, std=OFFSET_STD)
        nn.init.normal_(self.sample_kernel.weight, std=SAMPLE_KERNEL_STD)
        for gate in (self.offset_mask, self.kernel_mask):
            nn.init.zeros_(gate.weight)
        for conv in (self.offset, self.offset_mask, self.sample_kernel, self.kernel_mask):
            nn.init.zeros_(conv.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, groups={self.groups}, sample_k={self.sample_k}'

    def sample_positions(self, x: Tensor) -> Tensor:
        """Steps 1-2's positions: (B, G, sH, sW, 2) ``(x, y)`` in low-resolution pixels, in at
        least float32 (half precision cannot place a point to a pixel at a few hundred)."""
        batch, _, height, width = x.shape
        s, groups = self.scale_factor, self.groups
        offsets, gates = pointwise(x, self.offset, self.offset_mask)
        offsets = offsets * gates.sigmoid()
        # (B, G, a, b, comp, H, W) -> (B, G, H, a, W, b, comp) -> (B, G, sH, sW, 2): one copy.
        offsets = offsets.view(batch, groups, s, s, 2, height, width).permute(0, 1, 5, 2, 6, 3, 4)
        dtype = torch.promote_types(offsets.dtype, torch.float32)
        offsets = offsets.to(dtype).reshape(batch, groups, s * height, s * width, 2)
        centres = pixel_centres(s * height, s * width, dtype, x.device)
        return (centres.view(s * height, s * width, 2) + offsets) / s

    def filter_kernels(self, resampled: Tensor) -> Tensor:
        """Step 3's kernels from r (B, C, oH, oW): (B, 1, k^2, oH, oW), softmax-normalised."""
        logits, gates = pointwise(resampled, self.sample_kernel, self.kernel_mask)
        logits = logits * gates.sigmoid()
        return logits.softmax(dim=1).unsqueeze(1)

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        batch, channels, height, width = x.shape
        s = self.scale_factor
        sampled = point_sample(x, self.sample_positions(x), self.groups, padding_mode='border')
        resampled = sampled.reshape(batch, channels, s * height, s * width)
        kernels = self.filter_kernels(crop_to(resampled, size))
        return local_filter(resampled, kernels, self.sample_k)
