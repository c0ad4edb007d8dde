"""FADE: Fusing the Assets of Decoder and Encoder (Lu et al., ECCV 2022; journal version IJCV 2024).

FADE upsamples the low-resolution decoder feature ``x`` (the authors' ``de``) with CARAFE-style
reassembly, but its k x k kernels come from both ``x`` and the high-resolution encoder feature
``guide`` (``en``) through a *semi-shift convolution*, and a gate computed from ``x`` lets the
encoder feature through where detail matters:

    kernels = softmax_taps( conv3x3(compress_en(guide)) + nearest_up_s(conv3x3(compress_de(x))) )
    output  = gate * guide + (1 - gate) * reassemble(x, kernels),
    gate    = sigmoid(nearest_up_s(conv1x1(x)))

with one 3x3 ``content_encoder`` shared by both branches (its bias is therefore added twice).

Classes (authors' code: ``FADE_L2H.py`` and ``FADE_H2L.py`` at the root of poppinace/fade; the
segmentation/detection forks' ``fade.py`` adds a ``gating`` flag):

* :class:`FADE` - journal form (``FADE_L2H.FADE``); ``gating=False`` is the forks' default.
* :class:`FADELite` - depth-wise content encoder (``FADE_L2H.FADELite``).
* :class:`SemiShiftUp` - FADE without the gate (``FADE_L2H.SemiShiftUp``).
* :class:`FADEECCV` - conference form (``FADE_H2L.FADE``): the same function as :class:`FADE`
  (the converter renames the authors' keys), with the conference initialisation, for
  ``scale_factor=2``. The later third-party port ``pytorch_implementation/FADE_H2L.py`` regroups
  the padded guide copies' channels and computes another function, no paper's operator: not
  provided.

All share the parameter layout ``gate_generator.conv`` and
``ker_generator.{compressor_en, compressor_de, content_encoder}``.

Output size (see :mod:`mmdynup.upsamplers.base`): the guide has the output size
(oH, oW) <= (sH, sW); the encoder branch sees the guide as it is (zeros beyond its border), the
decoder branch and the gate are the top-left (oH, oW) window of their s x nearest upsampling.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ..ops.projected_convolution import projected_convolution
from ..ops.reassembly import gated_reassemble, parent_index, reassemble
from ..registry import register_upsampler
from ..checks import check_odd_kernel, check_positive_int, check_scale_factor
from .base import Upsampler
from .carafe import normalise_kernels


def nearest_upsample_to(tensor: Tensor, scale_factor: int, size: Tuple[int, int]) -> Tensor:
    """Nearest s x upsampling cropped to ``size``: (B, C, H, W) -> (B, C, oH, oW).

    Indexes parent pixels (i // s, j // s) directly, exact for every integer s (equal to
    ``torch.nn.functional.interpolate(scale_factor=s)`` where that is exact).
    """
    rows = parent_index(size[0], scale_factor, tensor.device)
    cols = parent_index(size[1], scale_factor, tensor.device)
    return tensor[..., rows, :][..., cols]


class GateGenerator(nn.Module):
    """Decoder-dependent gate: (B, C, H, W) -> sigmoid(nearest-up(conv1x1(x))) (B, 1, oH, oW)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, scale_factor: int, size: Tuple[int, int]) -> Tensor:
        return torch.sigmoid(nearest_upsample_to(self.conv(x), scale_factor, size))


class SemiShift(nn.Module):
    """Semi-shift convolution of the journal version: kernel scores from encoder and decoder.

    ``compressor_en`` (1x1 with bias) and ``compressor_de`` (1x1, no bias) bring both features to
    ``embedding_dim`` channels; one ``content_encoder`` (3x3, padding 1, ``encoder_groups``
    groups) maps each to k*k scores; the decoder's are nearest-upsampled and added.

    Shapes: guide (B, C_g, oH, oW), x (B, C, H, W) -> (B, k*k, oH, oW); with ``share_guide``
    also the guide, to be used in its place downstream (its gradient is then added to the
    encoder branch's in one buffer: :func:`~mmdynup.ops.projected_convolution.projected_convolution`,
    which also keeps no ``embedding_dim``-channel full-resolution activation for the backward).
    """

    def __init__(self, guide_channels: int, in_channels: int, kernel_taps: int,
                 embedding_dim: int, encoder_groups: int = 1) -> None:
        super().__init__()
        self.compressor_en = nn.Conv2d(guide_channels, embedding_dim, kernel_size=1)
        self.compressor_de = nn.Conv2d(in_channels, embedding_dim, kernel_size=1, bias=False)
        self.content_encoder = nn.Conv2d(embedding_dim, kernel_taps, kernel_size=3, padding=1,
                                         groups=encoder_groups)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``FADE_L2H``: Xavier-uniform weights, zero biases."""
        for conv in (self.compressor_en, self.compressor_de, self.content_encoder):
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, guide: Tensor, x: Tensor, scale_factor: int, share_guide: bool = False):
        size = tuple(guide.shape[-2:])
        encoder = self.content_encoder
        encoder_part, guide = projected_convolution(
            guide, self.compressor_en.weight, self.compressor_en.bias, encoder.weight,
            encoder.bias, encoder.groups, share_input=True)
        decoder_part = encoder(self.compressor_de(x))
        scores = encoder_part + nearest_upsample_to(decoder_part, scale_factor, size)
        return (scores, guide) if share_guide else scores


class ConferenceSemiShift(SemiShift):
    """:class:`SemiShift` with the initialisation of the conference code (``FADE_H2L``).

    The authors' conference code computes the encoder branch as a stride-2 3x3 convolution of four
    copies of the compressed guide, each zero-padded by one pixel on another pair of sides
    (top-left, top-right, bottom-left, bottom-right); copy q gives sub-pixel phase q (row-major
    over the 2 x 2 positions). Output (i, j) of copy q is centred on guide pixel
    (2i + q // 2, 2j + q % 2) and reads its 3 x 3 zero-padded neighbourhood, so the four phases
    together are the stride-1, padding-1 convolution of the guide that :class:`SemiShift`
    computes: one function (``tests/upsamplers/test_fade.py`` holds the four-phase form equal).

    Initialisation as ``FADE_H2L``: Xavier-uniform compressors (mmcv's ``xavier_init``),
    Xavier-normal content encoder weights, zero biases.
    """

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.xavier_normal_(self.content_encoder.weight)


@register_upsampler
class FADE(Upsampler):
    """FADE, journal version (Lu et al., IJCV 2024; authors' ``FADE_L2H.FADE``).

    Args:
        in_channels: C of the low-resolution decoder feature ``x`` (``in_channels_de``).
        scale_factor: integer s >= 2 (the authors' code hard-codes 2 in its nearest upsampling;
            here both nearest upsamplings follow s).
        guide_channels: C_g of the high-resolution encoder feature ``guide``
            (``in_channels_en``); defaults to ``in_channels``; must equal it when ``gating``.
        up_kernel_size: reassembly kernel size k (odd; 5 in the paper).
        gating: blend in the guide with the decoder-dependent gate (the paper's FADE); False is
            "FADE without gating", the default of the authors' segmentation/detection forks.
        embedding_dim: channels after the compressors (64, hard-coded by the authors).

    Shapes:
        x (B, C, H, W), guide (B, C_g, oH, oW) -> (B, C, oH, oW), (oH, oW) <= (sH, sW).

    Example:
        >>> import torch
        >>> up = FADE(16, scale_factor=2)
        >>> up(torch.randn(2, 16, 5, 6), torch.randn(2, 16, 10, 12)).shape
        torch.Size([2, 16, 10, 12])
    """

    requires_guide = True
    kernel_generator_class = SemiShift

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 gating: bool = True, embedding_dim: int = 64) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.up_kernel_size = check_odd_kernel('up_kernel_size', up_kernel_size)
        if not isinstance(gating, bool):
            raise TypeError(f'gating must be True or False, got {gating!r} '
                            f'({type(gating).__name__})')
        if gating and self.guide_channels != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} with gating=True blends guide and upsampled x '
                f'channel-wise, so guide_channels must equal in_channels; got guide_channels='
                f'{self.guide_channels}, in_channels={self.in_channels}; use gating=False or '
                f'equal channels')
        self.gating = gating
        if gating:
            self.gate_generator = GateGenerator(self.in_channels)
        self.ker_generator = self.build_kernel_generator(embedding_dim)

    def build_kernel_generator(self, embedding_dim: int) -> SemiShift:
        self.embedding_dim = check_positive_int('embedding_dim', embedding_dim)
        return self.kernel_generator_class(self.guide_channels, self.in_channels,
                                           self.up_kernel_size ** 2, self.embedding_dim)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, up_kernel_size={self.up_kernel_size}, '
                f'gating={self.gating}, embedding_dim={self.embedding_dim}')

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        scores, guide = self.ker_generator(guide, x, self.scale_factor, share_guide=True)
        kernels = normalise_kernels(scores, groups=1, dtype=x.dtype)
        if not self.gating:
            return reassemble(x, kernels, self.up_kernel_size, self.scale_factor)
        gate = self.gate_generator(x, self.scale_factor, size)
        return gated_reassemble(x, kernels, self.up_kernel_size, self.scale_factor, gate, guide)


@register_upsampler
class FADELite(FADE):
    """FADE-Lite (Lu et al., IJCV 2024; authors' ``FADE_L2H.FADELite``): the compressors map
    straight to k*k channels and the content encoder is depth-wise, for about a quarter of FADE's
    parameters. Arguments and shapes as :class:`FADE` (no ``embedding_dim``)."""

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 gating: bool = True) -> None:
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size, gating,
                         embedding_dim=None)

    def build_kernel_generator(self, embedding_dim: None) -> SemiShift:
        self.embedding_dim = self.up_kernel_size ** 2
        return SemiShift(self.guide_channels, self.in_channels, self.embedding_dim,
                         self.embedding_dim, encoder_groups=self.embedding_dim)


@register_upsampler
class SemiShiftUp(FADE):
    """FADE without the gate (authors' ``FADE_L2H.SemiShiftUp``; "fade-without-gating"):
    reassembly with semi-shift kernels only, so guide and input channels may differ. Arguments
    and shapes as :class:`FADE` (no ``gating``)."""

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 embedding_dim: int = 64) -> None:
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size,
                         gating=False, embedding_dim=embedding_dim)


@register_upsampler
class FADEECCV(FADE):
    """FADE, conference version (Lu et al., ECCV 2022; authors' root ``FADE_H2L.FADE``).

    The same function as :class:`FADE` (see :class:`ConferenceSemiShift`); it differs in the
    authors' parameter names (``kernel_generator.conv1_en`` ...; :mod:`mmdynup.converters.fade`
    renames them) and in the initialisation. ``scale_factor`` must be 2: the conference code
    hard-codes it (four padded copies, stride 2, gate upsampled x2). The authors' file runs only
    square inputs with a guide of exactly twice the input size (it reshapes the padded copies with
    the low-resolution height for both sides); this module computes the same function on any
    size, as :class:`FADE` does. Arguments and shapes as :class:`FADE`.
    """

    kernel_generator_class = ConferenceSemiShift

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 5,
                 gating: bool = True, embedding_dim: int = 64) -> None:
        if check_scale_factor(scale_factor) != 2:
            raise ValueError(f'FADEECCV computes the four sub-pixel phases of a 2x upsampling, so '
                             f'scale_factor must be 2, got {scale_factor!r}; use FADE for other '
                             f'scales')
        super().__init__(in_channels, scale_factor, guide_channels, up_kernel_size, gating,
                         embedding_dim)
