"""CARAFE: Content-Aware ReAssembly of FEatures (Wang et al., ICCV 2019).

Same module, arguments, initialisation and parameter names as mmcv's ``CARAFEPack``
(``mmcv/ops/carafe.py``), but the reassembly runs through :func:`mmdynup.ops.reassembly.reassemble`,
so it also runs on a CPU (mmcv 2.1 ships CUDA/MLU/NPU kernels only).

Also home of :func:`normalise_kernels`, the softmax over each group's k x k taps that every
kernel-predicting upsampler (CARAFE, FADE) applies before reassembly.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.reassembly import reassemble
from ..registry import register_upsampler
from ..checks import check_divisible, check_odd_kernel, check_positive_int
from .base import Upsampler, crop_to


def normalise_kernels(kernel_scores: Tensor, groups: int,
                      dtype: Optional[torch.dtype] = None) -> Tensor:
    """Softmax over each group's k*k taps, accumulated in at least float32.

    Args:
        kernel_scores: (B, G * k * k, oH, oW) unnormalised kernels, channel ``g * k * k + tap``.
        groups: G.
        dtype: dtype of the returned kernels (default: that of ``kernel_scores``); the upsamplers
            pass their input's dtype, which under autocast differs from the 16-bit scores.

    Returns:
        (B, G, k * k, oH, oW) kernels that sum to one over the taps, the layout
        :func:`~mmdynup.ops.reassembly.reassemble` takes.
    """
    batch, channels, height, width = kernel_scores.shape
    kernels = kernel_scores.reshape(batch, groups, channels // groups, height, width).softmax(
        dim=2, dtype=torch.promote_types(kernel_scores.dtype, torch.float32))
    return kernels.to(kernel_scores.dtype if dtype is None else dtype)


def check_centred_encoder(encoder_kernel: int, encoder_dilation: int) -> None:
    """The content encoder pads by ``(k - 1) * d / 2``: only an even span keeps the input size."""
    if (encoder_kernel - 1) * encoder_dilation % 2:
        raise ValueError(f'encoder_kernel={encoder_kernel} with encoder_dilation='
                         f'{encoder_dilation} spans {(encoder_kernel - 1) * encoder_dilation + 1} '
                         f'pixels, which has no centre; use an odd encoder_kernel or an even '
                         f'encoder_dilation')


@register_upsampler
class CARAFE(Upsampler):
    """CARAFE (Wang et al., ICCV 2019), the module mmcv calls ``CARAFEPack``.

    ``channel_compressor`` (1x1, C -> compressed_channels) and ``content_encoder``
    (encoder_kernel x encoder_kernel, -> up_group * up_kernel^2 * s^2) predict, for every
    low-resolution pixel, s x s kernels of up_kernel x up_kernel taps per group; pixel shuffle
    moves them to their high-resolution pixels and a softmax per group normalises them; each
    output pixel is then the kernel-weighted sum of the up_kernel x up_kernel window of ``x``
    around its low-resolution parent.

    Args:
        in_channels: C of ``x`` (mmcv: ``channels``); also the output channels.
        scale_factor: integer s >= 2.
        guide_channels: ignored (CARAFE needs no guide); accepted so that one config fits all.
        up_kernel: reassembly kernel size k (odd).
        up_group: kernel groups G; channel c uses the kernels of group ``c // (C / G)``.
        encoder_kernel: content encoder kernel size.
        encoder_dilation: content encoder dilation.
        compressed_channels: channels after the compressor.

    Shapes:
        x (B, C, H, W) -> (B, C, oH, oW), (oH, oW) = size or (sH, sW); a smaller size keeps the
        top-left window of the s x output (see :mod:`mmdynup.upsamplers.base`).

    Example:
        >>> import torch
        >>> up = CARAFE(16, scale_factor=2, compressed_channels=8)
        >>> up(torch.randn(2, 16, 5, 6)).shape
        torch.Size([2, 16, 10, 12])
    """

    requires_guide = False

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel: int = 5, up_group: int = 1,
                 encoder_kernel: int = 3, encoder_dilation: int = 1,
                 compressed_channels: int = 64) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.up_kernel = check_odd_kernel('up_kernel', up_kernel)
        self.up_group = check_positive_int('up_group', up_group)
        check_divisible('in_channels', self.in_channels, self.up_group, 'up_group')
        self.encoder_kernel = check_positive_int('encoder_kernel', encoder_kernel)
        self.encoder_dilation = check_positive_int('encoder_dilation', encoder_dilation)
        check_centred_encoder(self.encoder_kernel, self.encoder_dilation)
        self.compressed_channels = check_positive_int('compressed_channels', compressed_channels)
        s = self.scale_factor
        self.channel_compressor = nn.Conv2d(self.in_channels, self.compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            self.compressed_channels, self.up_group * self.up_kernel ** 2 * s * s,
            self.encoder_kernel, padding=(self.encoder_kernel - 1) * self.encoder_dilation // 2,
            dilation=self.encoder_dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv's ``CARAFEPack.init_weights``: Xavier-uniform convs, then the content encoder
        normal with std 0.001 (kernels start close to uniform averaging); zero biases."""
        nn.init.xavier_uniform_(self.channel_compressor.weight)
        nn.init.zeros_(self.channel_compressor.bias)
        nn.init.normal_(self.content_encoder.weight, mean=0.0, std=0.001)
        nn.init.zeros_(self.content_encoder.bias)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, up_kernel={self.up_kernel}, up_group={self.up_group}, '
                f'encoder_kernel={self.encoder_kernel}, '
                f'encoder_dilation={self.encoder_dilation}, '
                f'compressed_channels={self.compressed_channels}')

    def predict_kernels(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        """(B, C, H, W) -> normalised kernels (B, G, k*k, oH, oW)."""
        kernel_scores = self.content_encoder(self.channel_compressor(x))  # (B, G*k*k*s*s, H, W)
        kernel_scores = crop_to(F.pixel_shuffle(kernel_scores, self.scale_factor), size)
        return normalise_kernels(kernel_scores, self.up_group, dtype=x.dtype)

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        kernels = self.predict_kernels(x, size)
        return reassemble(x, kernels, self.up_kernel, self.scale_factor)
