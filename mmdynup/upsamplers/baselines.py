"""Baseline upsamplers: nearest and bilinear interpolation, transposed convolution, pixel shuffle.

The interpolation baselines resample to exactly the output size with ``F.interpolate(size=...)``,
as mmseg's ``resize`` (UPerHead) and mmdet's ``FPN`` do, so a head or neck using them equals the
upstream one. The learned baselines compute the s x output and keep its top-left window (see
:mod:`mmdynup.upsamplers.base`). All four ignore the guide's content.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.point_sampling import bilinear_resize
from ..registry import register_upsampler
from ..checks import check_odd_kernel, check_positive_int
from .base import Upsampler, crop_to


@register_upsampler
class NearestUpsample(Upsampler):
    """Nearest-neighbour interpolation (mmdet ``FPN``'s default top-down upsampling).

    Shapes: x (B, C, H, W) -> (B, C, oH, oW), (oH, oW) = size or (sH, sW).

    Example:
        >>> import torch
        >>> NearestUpsample(8)(torch.randn(1, 8, 3, 5)).shape
        torch.Size([1, 8, 6, 10])
    """

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        return F.interpolate(x, size=size, mode='nearest')


@register_upsampler
class BilinearUpsample(Upsampler):
    """Bilinear interpolation (mmseg ``UPerHead``'s top-down upsampling).

    Args:
        align_corners: as in ``F.interpolate``; False in mmseg's heads.

    Shapes: x (B, C, H, W) -> (B, C, oH, oW), (oH, oW) = size or (sH, sW).
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, align_corners: bool = False) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        if not isinstance(align_corners, bool):
            raise TypeError(f'align_corners must be True or False, got {align_corners!r} '
                            f'({type(align_corners).__name__})')
        self.align_corners = align_corners

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, align_corners={self.align_corners}'

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        # F.interpolate, but with a deterministic backward on CUDA in deterministic mode.
        return bilinear_resize(x, size, self.align_corners)


#: ``F.interpolate`` arguments mmdet's ``FPN`` takes in its ``upsample_cfg``.
INTERPOLATE_ARGUMENTS = ('mode', 'align_corners', 'scale_factor', 'recompute_scale_factor',
                         'antialias')


@register_upsampler
class InterpolateUpsample(Upsampler):
    """Any ``F.interpolate`` form, exactly as mmdet's ``FPN`` applies its ``upsample_cfg``
    (``dict(mode='bilinear', align_corners=True)``, ``dict(scale_factor=2)``, ...).

    Args:
        mode, align_corners, recompute_scale_factor, antialias: ``F.interpolate``'s.
        interpolate_scale_factor: ``F.interpolate``'s ``scale_factor`` (named apart from the
            host-supplied ``scale_factor``). When set, the output is ``F.interpolate(x,
            scale_factor=...)`` whatever size the host asks for, as in mmdet's ``FPN``, whose
            addition then fails on a pyramid that is not exactly that ratio; otherwise the output
            is resampled to the host's size.

    Shapes: x (B, C, H, W) -> (B, C, oH, oW).
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, mode: str = 'nearest',
                 align_corners: Optional[bool] = None,
                 interpolate_scale_factor: Optional[float] = None,
                 recompute_scale_factor: Optional[bool] = None, antialias: bool = False) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.interpolate_scale_factor = interpolate_scale_factor
        self.arguments = dict(mode=mode, align_corners=align_corners,
                              recompute_scale_factor=recompute_scale_factor, antialias=antialias)
        # F.interpolate refuses these at call time; refuse them at build time with the fix.
        F.interpolate(torch.zeros(1, 1, 2, 2), size=(3, 3) if interpolate_scale_factor is None
                      else None, scale_factor=interpolate_scale_factor, **self.arguments)

    def extra_repr(self) -> str:
        arguments = dict(self.arguments, scale_factor=self.interpolate_scale_factor)
        shown = ', '.join(f'{k}={v!r}' for k, v in arguments.items() if v is not None)
        return f'{super().extra_repr()}, {shown}'

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        if self.interpolate_scale_factor is not None:
            return F.interpolate(x, scale_factor=self.interpolate_scale_factor, **self.arguments)
        return F.interpolate(x, size=size, **self.arguments)


def transposed_conv_padding(kernel_size: int, scale_factor: int) -> Tuple[int, int]:
    """``(padding, output_padding)`` giving a stride-s transposed conv an output of exactly s x
    the input: ``k - 2 * padding + output_padding = s`` with ``0 <= output_padding < s``."""
    padding = max(0, -(-(kernel_size - scale_factor) // 2))
    return padding, scale_factor - kernel_size + 2 * padding


@register_upsampler
class DeconvUpsample(Upsampler):
    """Transposed convolution, stride s, C -> C (the ``'deconv'`` upsampler of mmdet's
    ``FPN_CARAFE`` and of the authors' segmentation/detection forks).

    Args:
        upsample_kernel: kernel size; default ``2 * s - 1`` (3 for s = 2, the forks' and
            ``FPN_CARAFE``'s choice, padding 1, output padding 1), the smallest odd kernel
            whose neighbouring taps overlap. Padding and output padding follow from it.

    Initialisation: Xavier-uniform weight, zero bias (``FPN_CARAFE.init_weights``).

    Shapes: x (B, C, H, W) -> (B, C, oH, oW), the top-left window of the (sH, sW) output.
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None,
                 upsample_kernel: Optional[int] = None) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        s = self.scale_factor
        self.upsample_kernel = check_positive_int(
            'upsample_kernel', 2 * s - 1 if upsample_kernel is None else upsample_kernel)
        padding, output_padding = transposed_conv_padding(self.upsample_kernel, s)
        self.deconv = nn.ConvTranspose2d(self.in_channels, self.in_channels,
                                         self.upsample_kernel, stride=s, padding=padding,
                                         output_padding=output_padding)
        nn.init.xavier_uniform_(self.deconv.weight)
        nn.init.zeros_(self.deconv.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, upsample_kernel={self.upsample_kernel}'

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        return crop_to(self.deconv(x), size)


@register_upsampler
class PixelShuffleUpsample(Upsampler):
    """Sub-pixel convolution (Shi et al., CVPR 2016), as mmcv's ``PixelShufflePack``: a conv
    C -> C * s^2 followed by pixel shuffle.

    Args:
        upsample_kernel: conv kernel size (odd, padding ``k // 2``); 3 as in mmdet's
            ``FPN_CARAFE`` and the authors' forks.

    Initialisation: Xavier-uniform weight, zero bias (``PixelShufflePack.init_weights``).

    Shapes: x (B, C, H, W) -> (B, C, oH, oW), the top-left window of the (sH, sW) output.
    """

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, upsample_kernel: int = 3) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.upsample_kernel = check_odd_kernel('upsample_kernel', upsample_kernel)
        self.upsample_conv = nn.Conv2d(self.in_channels,
                                       self.in_channels * self.scale_factor ** 2,
                                       self.upsample_kernel, padding=self.upsample_kernel // 2)
        nn.init.xavier_uniform_(self.upsample_conv.weight)
        nn.init.zeros_(self.upsample_conv.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, upsample_kernel={self.upsample_kernel}'

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        return crop_to(F.pixel_shuffle(self.upsample_conv(x), self.scale_factor), size)
