"""FreqFusion: frequency-aware feature fusion (Chen, Fu, Gu, Yan, Harada, Huang, "Frequency-aware
Feature Fusion for Dense Image Prediction", TPAMI 2024; authors' code: Linwei-Chen/FreqFusion,
top-level ``FreqFusion.py``, and its copies in the SegNeXt / mmdetection folders that produced the
paper's numbers).

FreqFusion fuses a coarse feature ``x`` (the authors' ``lr_feat``, B x C x H x W) with the finer
feature ``guide`` of the level below (``hr_feat``, B x C_g x 2H x 2W) and returns both terms of a
top-down merge:

* the coarse feature upsampled by adaptive *low-pass* kernels (ALPF, k_lp x k_lp, one per
  high-resolution pixel, CARAFE-style reassembly of the window around the parent pixel);
* the fine feature with its high frequencies boosted by adaptive *high-pass* kernels (AHPF):
  ``guide + (guide - lowpass_k_hp(guide))`` (``hr_residual``), a k_hp x k_hp reassembly at
  scale 1;
* optionally (``feature_resample``) the upsampled coarse feature is then resampled DySample-style
  at offsets predicted from both compressed features and their local-similarity "direction
  features" (the offset generator).

With ``ch``, ``cl`` the 1x1-compressed guide and x, ``LP`` / ``HP`` the low- / high-pass content
encoders and ``P`` the kernel normaliser (softmax over the taps, times a Hamming window,
renormalised), the default path (``semi_conv``, ``comp_feat_upsample``, high pass on) is::

    a   = HP(ch)
    ch2 = 2 ch - R1(ch, P(a))                     # R1 / R2: reassembly at scale 1 / 2
    b   = LP(ch2)
    lp  = b + R2(LP(cl), P(b))                    # low-res logits upsampled by hr kernels
    hp  = a + R2(HP(cl), P(lp))
    x_up  = R2(x, P(lp));  guide_out = guide + (guide - R1(guide, P(hp)))

Reassembly is mmcv's CARAFE (zero padding), which the paper's experiments import; the
reflect-padded pure-PyTorch fallback of the top-level file computes another function near the
borders. Every k x k application runs through :func:`mmdynup.ops.reassembly.reassemble` (tiled,
memory-lean by default), every sampling step through :func:`mmdynup.ops.point_sampling.point_sample`.
The Hamming windows are persistent buffers, float32-rounded like the authors' ``FloatTensor``;
a converted checkpoint loads them as they are.

As an :class:`~mmdynup.upsamplers.base.Upsampler`, ``forward(x, guide)`` returns the upsampled
coarse feature; :meth:`FreqFusion.merge` returns the authors' top-down merge
``guide_out + x_up`` (their FPN neck) and :meth:`FreqFusion.merge_concatenated` their
concatenating form ``cat([guide_out, x_up])`` (their SegFormer / SegNeXt heads).

Sizes: the guide may be the top-left (oH, oW) window of the 2x grid of ``x`` (odd FPN levels):
every high-resolution map is computed at (oH, oW) and the 2x reassemblies read the parent
window (i // 2, j // 2), so with (oH, oW) = (2H, 2W) this is exactly the authors' function. With
``semi_conv=False`` the coarse feature is first resized to the guide (``upsample_mode``), so any
ratio works.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.neighbour_similarity import neighbour_similarity
from ..ops.point_sampling import bilinear_resize, point_sample, subpixel_positions
from ..ops.reassembly import reassemble
from ..registry import register_upsampler
from .base import (Upsampler, check_divisible, check_feature, check_odd_kernel,
                   check_positive_int, memory_format_of)
from .carafe import check_centred_encoder, normalise_kernels
from .dysample import DySample
from .fade import nearest_upsample_to

UPSAMPLE_MODES = ('nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area')
DIRECTION_FEATURES = ('sim_concat', 'sim')
#: The offset generator's direction features: cosine similarity over a 3 x 3 window, dilation 2.
SIMILARITY_WINDOW, SIMILARITY_DILATION = 3, 2
#: Channels per GroupNorm group of the offset generator's normalisation.
NORM_GROUP_WIDTH = 8


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {value!r} ({type(value).__name__})')
    return value


def hamming_window_2d(kernel_size: int) -> Tensor:
    """(1, 1, k, k) outer product of two symmetric Hamming windows (numpy's ``hamming``),
    rounded to float32 as the authors' ``torch.FloatTensor`` buffers are."""
    window = torch.hamming_window(kernel_size, periodic=False, dtype=torch.float64)
    return torch.outer(window, window).float().to(torch.get_default_dtype())[None, None]


def normalise_windowed(scores: Tensor, window: Tensor, dtype: torch.dtype) -> Tensor:
    """FreqFusion's kernel normaliser: softmax over the k*k taps, times the window, divided by
    the new sum.

    Args:
        scores: (B, k*k, oH, oW) kernel logits, tap ``dy * k + dx``.
        window: (1, 1, k, k) Hamming window, or a single 1.0 (no window).
        dtype: dtype of the result.

    Returns:
        (B, 1, k*k, oH, oW) kernels, the layout of :func:`~mmdynup.ops.reassembly.reassemble`.
    """
    kernels = normalise_kernels(scores, groups=1, dtype=dtype)
    kernels = kernels * window.reshape(1, 1, -1, 1, 1).to(dtype)
    return kernels / kernels.sum(dim=2, keepdim=True)


class OffsetResampler(nn.Module):
    """FreqFusion's offset generator (the authors' ``LocalSimGuidedSampler``, style ``'lp'``,
    scale 2, with direct scale): resamples the upsampled coarse feature where its neighbours are
    more consistent.

    Offsets, in low-resolution pixels and (x, y) order, one per channel group and high-resolution
    pixel::

        offset = (O(lr_d) + O_hr(hr_d)) * sigmoid(S(lr_d') + S_hr(hr_d')) + init_pos

    ``O`` / ``S`` (``offset`` / ``direct_scale``) run on the low-resolution guide and predict the
    2 x 2 sub-pixels of each pixel (channels: component, group, sub-row, sub-column);
    ``O_hr`` / ``S_hr`` (``hr_offset`` / ``hr_direct_scale``) run on the high-resolution one.
    ``hr_d`` / ``lr_d`` are the direction features of the (optionally GroupNorm'd) compressed
    guides: with ``'sim_concat'`` the map concatenated with its 8 neighbour cosine similarities
    (3 x 3 window, dilation 2), feeding all four convs; with ``'sim'`` (the SegNeXt copy) the 8
    similarities alone feed ``O`` / ``O_hr`` and the map itself ``S`` / ``S_hr``. ``init_pos`` is
    DySample's +-0.25 bilinear grid. The sample is bilinear with border padding, each of the
    ``groups`` contiguous channel chunks at its own positions.

    Args:
        channels: channels of both compressed guides.
        groups: channel groups of the sampled feature (and of the offsets).
        kernel_size: kernel of the four convs (the FreqFusion ``encoder_kernel``), odd.
        norm: GroupNorm (``channels // 8`` groups) on both guides.
        direction_feat: ``'sim_concat'`` (the top-level file) or ``'sim'``.
    """

    scale: ClassVar[int] = 2

    def __init__(self, channels: int, groups: int = 4, kernel_size: int = 1, norm: bool = True,
                 direction_feat: str = 'sim_concat') -> None:
        super().__init__()
        self.groups = groups
        self.direction_feat = direction_feat
        neighbours = SIMILARITY_WINDOW ** 2 - 1
        concatenated = channels + neighbours
        offset_in = concatenated if direction_feat == 'sim_concat' else neighbours
        scope_in = concatenated if direction_feat == 'sim_concat' else channels
        low_res_out, high_res_out = 2 * groups * self.scale ** 2, 2 * groups
        padding = kernel_size // 2
        self.offset = nn.Conv2d(offset_in, low_res_out, kernel_size, padding=padding)
        self.direct_scale = nn.Conv2d(scope_in, low_res_out, kernel_size, padding=padding)
        self.hr_offset = nn.Conv2d(offset_in, high_res_out, kernel_size, padding=padding)
        self.hr_direct_scale = nn.Conv2d(scope_in, high_res_out, kernel_size, padding=padding)
        if norm:
            self.norm_hr = nn.GroupNorm(channels // NORM_GROUP_WIDTH, channels)
            self.norm_lr = nn.GroupNorm(channels // NORM_GROUP_WIDTH, channels)
        else:
            self.norm_hr = self.norm_lr = nn.Identity()
        self.register_buffer('init_pos', DySample.bilinear_positions(self.scale, groups))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The sampler's own init (``FreqFusion.init_weights`` overwrites it): offsets
        N(0, 0.001), scopes zero, biases zero."""
        for conv in (self.offset, self.hr_offset):
            nn.init.normal_(conv.weight, std=0.001)
            nn.init.zeros_(conv.bias)
        for conv in (self.direct_scale, self.hr_direct_scale):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def direction_features(self, guide: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, E, h, w) -> (input of the offset conv, input of the scope conv)."""
        similarity = neighbour_similarity(guide, SIMILARITY_WINDOW, SIMILARITY_DILATION)
        if self.direction_feat == 'sim':
            return similarity, guide
        concatenated = torch.cat([guide, similarity], dim=1)
        return concatenated, concatenated

    def forward(self, hr_guide: Tensor, lr_guide: Tensor, feature: Tensor) -> Tensor:
        """Resample ``feature`` (B, C, oH, oW).

        Args:
            hr_guide: (B, E, oH, oW) compressed fine feature, oH <= 2h, oW <= 2w.
            lr_guide: (B, E, h, w) compressed coarse feature.
            feature: (B, C, oH, oW) the upsampled coarse feature, C divisible by ``groups``.

        Returns:
            (B, C, oH, oW).
        """
        batch, _, height, width = lr_guide.shape
        size = tuple(feature.shape[-2:])
        hr_offset_in, hr_scope_in = self.direction_features(self.norm_hr(hr_guide))
        lr_offset_in, lr_scope_in = self.direction_features(self.norm_lr(lr_guide))
        full = (self.scale * height, self.scale * width)
        # Both branches at high resolution: pixel shuffle of the low-res predictions (the
        # authors pixel-unshuffle the high-res ones instead: the same sums, element by element).
        offset = (F.pixel_shuffle(self.offset(lr_offset_in), self.scale)
                  + self.padded(self.hr_offset(hr_offset_in), full))
        scope = (F.pixel_shuffle(self.direct_scale(lr_scope_in), self.scale)
                 + self.padded(self.hr_direct_scale(hr_scope_in), full))
        initial = self.init_pos.to(offset.dtype).expand(1, -1, height, width)
        offset = offset * scope.sigmoid() + F.pixel_shuffle(initial, self.scale)
        # (B, 2, G, 2h, 2w) -> (B, G, h, 2, w, 2, xy): offsets from each parent pixel's centre.
        offset = offset.view(batch, 2, self.groups, height, self.scale, width, self.scale)
        positions = subpixel_positions(offset.permute(0, 2, 3, 4, 5, 6, 1), self.scale, size)
        # Low-res pixel units -> pixels of the (high-resolution) feature being sampled.
        sampled = point_sample(feature, positions * self.scale, self.groups,
                               padding_mode='border')
        return sampled.reshape(feature.shape)

    @staticmethod
    def padded(high_res: Tensor, full: Tuple[int, int]) -> Tensor:
        """(B, 2G, oH, oW) -> (B, 2G, 2h, 2w); the padding lies outside the kept window."""
        out_h, out_w = high_res.shape[-2:]
        if (out_h, out_w) == tuple(full):
            return high_res
        return F.pad(high_res, (0, full[1] - out_w, 0, full[0] - out_h))


@register_upsampler
class FreqFusion(Upsampler):
    """FreqFusion (TPAMI 2024), guided: ``forward(x, guide) -> x`` upsampled to the guide's size.

    Args:
        in_channels: C of the coarse feature ``x`` (the authors' ``lr_channels``).
        scale_factor: 2 (the reassembly of ``semi_conv`` and the offset generator are 2x); with
            ``semi_conv=False`` and no resampler any integer >= 2 (``x`` is resized to the guide).
        guide_channels: C_g of the fine feature ``guide`` (``hr_channels``; default C).
        lowpass_kernel: k_lp of the low-pass kernels (odd).
        highpass_kernel: k_hp of the high-pass kernels (odd).
        encoder_kernel: kernel of both content encoders (and of the offset generator's convs).
        encoder_dilation: dilation of both content encoders.
        compressed_channels: width E of the two 1x1 compressors.
        compress_ratio: instead of ``compressed_channels``, E = (C + C_g) // compress_ratio, the
            rule of the authors' FPN (8) and SegNeXt head (4).
        semi_conv: kernels from both features, coarse ones upsampled (the default); False: from
            ``nearest_up(cl) + ch`` after resizing ``x`` to the guide with ``upsample_mode``.
        comp_feat_upsample: upsample the coarse kernel logits with the fine kernels (ALPF/AHPF
            "initial upsampling"); False: nearest.
        use_high_pass: enhance the guide with AHPF (``content_encoder2``); False returns it as
            it is and needs ``comp_feat_upsample=False`` or ``semi_conv=False``.
        hr_residual: ``guide_out = guide + highpass(guide)``; False: ``highpass(guide)``.
        upsample_mode: ``F.interpolate`` mode of the ``semi_conv=False`` resize.
        align_corners: ``align_corners`` of that resize (ignored for nearest modes).
        feature_resample: the offset generator (:class:`OffsetResampler`).
        feature_resample_group: its channel groups (divide C and E).
        feature_resample_norm: its GroupNorm (E // 8 groups).
        direction_feat: its direction features, ``'sim_concat'`` (top-level file) or ``'sim'``
            (the SegNeXt head's copy).
        hamming_window: multiply the kernels by Hamming windows (False: by 1).

    Shapes:
        x (B, C, H, W), guide (B, C_g, oH, oW) with (oH, oW) <= (2H, 2W) -> (B, C, oH, oW);
        :meth:`fuse` also returns the low-pass kernels (B, k_lp^2, oH, oW) and the enhanced
        guide (B, C_g, oH, oW).

    Example:
        >>> import torch
        >>> up = FreqFusion(16, guide_channels=8, compressed_channels=16)
        >>> x, guide = torch.randn(2, 16, 5, 6), torch.randn(2, 8, 10, 12)
        >>> up(x, guide).shape, up.merge_concatenated(x, guide).shape
        (torch.Size([2, 16, 10, 12]), torch.Size([2, 24, 10, 12]))
    """

    requires_guide: ClassVar[bool] = True
    concatenates_pyramid: ClassVar[bool] = True

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, lowpass_kernel: int = 5,
                 highpass_kernel: int = 3, encoder_kernel: int = 3, encoder_dilation: int = 1,
                 compressed_channels: int = 64, compress_ratio: Optional[int] = None,
                 semi_conv: bool = True, comp_feat_upsample: bool = True,
                 use_high_pass: bool = True, hr_residual: bool = True,
                 upsample_mode: str = 'nearest', align_corners: bool = False,
                 feature_resample: bool = False, feature_resample_group: int = 4,
                 feature_resample_norm: bool = True, direction_feat: str = 'sim_concat',
                 hamming_window: bool = True) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        self.lowpass_kernel = check_odd_kernel('lowpass_kernel', lowpass_kernel)
        self.highpass_kernel = check_odd_kernel('highpass_kernel', highpass_kernel)
        self.encoder_kernel = check_positive_int('encoder_kernel', encoder_kernel)
        self.encoder_dilation = check_positive_int('encoder_dilation', encoder_dilation)
        check_centred_encoder(self.encoder_kernel, self.encoder_dilation)
        if compress_ratio is not None:
            compress_ratio = check_positive_int('compress_ratio', compress_ratio)
            compressed_channels = (self.in_channels + self.guide_channels) // compress_ratio
            if compressed_channels < 1:
                raise ValueError(f'compress_ratio={compress_ratio} leaves (in_channels + '
                                 f'guide_channels) // compress_ratio = 0 compressed channels; '
                                 f'use a ratio <= {self.in_channels + self.guide_channels}')
        self.compress_ratio = compress_ratio
        self.compressed_channels = check_positive_int('compressed_channels', compressed_channels)
        for name, value in (('semi_conv', semi_conv), ('comp_feat_upsample', comp_feat_upsample),
                            ('use_high_pass', use_high_pass), ('hr_residual', hr_residual),
                            ('align_corners', align_corners),
                            ('feature_resample', feature_resample),
                            ('feature_resample_norm', feature_resample_norm),
                            ('hamming_window', hamming_window)):
            setattr(self, name, check_bool(name, value))
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f'upsample_mode must be one of {UPSAMPLE_MODES} (F.interpolate '
                             f'modes), got {upsample_mode!r}')
        self.upsample_mode = upsample_mode
        if direction_feat not in DIRECTION_FEATURES:
            raise ValueError(f'direction_feat must be one of {DIRECTION_FEATURES}, got '
                             f'{direction_feat!r}')
        self.direction_feat = direction_feat
        if semi_conv and comp_feat_upsample and not use_high_pass:
            raise ValueError('use_high_pass=False needs comp_feat_upsample=False or '
                             'semi_conv=False: the default path upsamples the low-pass logits '
                             'with the high-pass-enhanced guide (the authors\' code raises '
                             'NotImplementedError here)')
        if (semi_conv or feature_resample) and self.scale_factor != 2:
            raise ValueError(f'FreqFusion with semi_conv or feature_resample fuses a level with '
                             f'the one of twice its size, so scale_factor must be 2, got '
                             f'{self.scale_factor}; use semi_conv=False, feature_resample=False '
                             f'for other ratios')
        self.feature_resample_group = check_positive_int('feature_resample_group',
                                                         feature_resample_group)
        if feature_resample:
            self.check_resampler_arguments()
        channels = self.compressed_channels
        self.hr_channel_compressor = nn.Conv2d(self.guide_channels, channels, 1)
        self.lr_channel_compressor = nn.Conv2d(self.in_channels, channels, 1)
        self.content_encoder = self.content_encoder_conv(self.lowpass_kernel)
        if feature_resample:
            self.dysampler = OffsetResampler(channels, self.feature_resample_group,
                                             self.encoder_kernel, feature_resample_norm,
                                             direction_feat)
        if use_high_pass:
            self.content_encoder2 = self.content_encoder_conv(self.highpass_kernel)
        if hamming_window:
            self.register_buffer('hamming_lowpass', hamming_window_2d(self.lowpass_kernel))
            self.register_buffer('hamming_highpass', hamming_window_2d(self.highpass_kernel))
        else:
            self.register_buffer('hamming_lowpass', torch.ones(1))
            self.register_buffer('hamming_highpass', torch.ones(1))
        self.reset_parameters()

    def check_resampler_arguments(self) -> None:
        groups, channels = self.feature_resample_group, self.compressed_channels
        check_divisible('in_channels', self.in_channels, groups, 'feature_resample_group')
        check_divisible('compressed_channels', channels, groups, 'feature_resample_group')
        if self.encoder_kernel % 2 == 0:
            raise ValueError(f'feature_resample=True needs an odd encoder_kernel (its offset '
                             f'convs pad by encoder_kernel // 2), got {self.encoder_kernel}')
        if self.feature_resample_norm and (channels < NORM_GROUP_WIDTH
                                           or channels % (channels // NORM_GROUP_WIDTH)):
            raise ValueError(f'feature_resample_norm=True normalises the compressed features '
                             f'with GroupNorm({channels} // 8, {channels}), which needs '
                             f'compressed_channels >= 8 and divisible by its // 8; got '
                             f'compressed_channels={channels}; use feature_resample_norm=False '
                             f'or e.g. a multiple of 8')

    def content_encoder_conv(self, kernel_size: int) -> nn.Conv2d:
        """A kernel-logit encoder: compressed channels -> k*k, ``encoder_kernel``, centred."""
        return nn.Conv2d(self.compressed_channels, kernel_size ** 2, self.encoder_kernel,
                         padding=(self.encoder_kernel - 1) * self.encoder_dilation // 2,
                         dilation=self.encoder_dilation)

    def reset_parameters(self) -> None:
        """The authors' ``init_weights``: every conv (the offset generator's included, whose own
        init it overwrites) Xavier-uniform with zero bias, then both content encoders
        N(0, 0.001)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for encoder in (self.content_encoder, getattr(self, 'content_encoder2', None)):
            if encoder is not None:
                nn.init.normal_(encoder.weight, std=0.001)
                nn.init.zeros_(encoder.bias)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, lowpass_kernel={self.lowpass_kernel}, '
                f'highpass_kernel={self.highpass_kernel}, '
                f'compressed_channels={self.compressed_channels}, semi_conv={self.semi_conv}, '
                f'comp_feat_upsample={self.comp_feat_upsample}, '
                f'use_high_pass={self.use_high_pass}, hr_residual={self.hr_residual}, '
                f'feature_resample={self.feature_resample}, '
                f'hamming_window={self.hamming_window}')

    # -- the operator -------------------------------------------------------------------------
    def lowpass(self, scores: Tensor, dtype: torch.dtype) -> Tensor:
        return normalise_windowed(scores, self.hamming_lowpass, dtype)

    def highpass(self, scores: Tensor, dtype: torch.dtype) -> Tensor:
        return normalise_windowed(scores, self.hamming_highpass, dtype)

    def kernel_scores(self, compressed_hr: Tensor, compressed_lr: Tensor,
                      dtype: torch.dtype) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """Low- and high-pass logits at the guide's size, and the compressed guide the offset
        generator reads (boosted on the default path)."""
        size = tuple(compressed_hr.shape[-2:])
        high_pass = self.use_high_pass
        if not self.semi_conv:
            merged = (F.interpolate(compressed_lr, size=size, mode='nearest') + compressed_hr)
            return (self.content_encoder(merged),
                    self.content_encoder2(merged) if high_pass else None, compressed_hr)
        if not self.comp_feat_upsample:
            def semi(encoder):
                return encoder(compressed_hr) + nearest_upsample_to(encoder(compressed_lr), 2, size)
            return (semi(self.content_encoder), semi(self.content_encoder2) if high_pass else None,
                    compressed_hr)
        high_hr = self.content_encoder2(compressed_hr)
        smoothed = reassemble(compressed_hr, self.highpass(high_hr, dtype), self.highpass_kernel, 1)
        compressed_hr = compressed_hr + compressed_hr - smoothed
        low_hr = self.content_encoder(compressed_hr)
        low = low_hr + reassemble(self.content_encoder(compressed_lr), self.lowpass(low_hr, dtype),
                                  self.lowpass_kernel, 2)
        high = high_hr + reassemble(self.content_encoder2(compressed_lr), self.lowpass(low, dtype),
                                    self.lowpass_kernel, 2)
        return low, high, compressed_hr

    def fuse(self, x: Tensor, guide: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The authors' forward ``(hr_feat=guide, lr_feat=x) -> (mask_lr, hr_feat, lr_feat)``.

        Args:
            x: (B, C, H, W) coarse feature.
            guide: (B, C_g, oH, oW) fine feature; (oH, oW) <= (2H, 2W) with ``semi_conv``.

        Returns:
            ``(kernels, guide_out, x_up)``: the normalised low-pass kernels (B, k_lp^2, oH, oW),
            the high-pass-enhanced guide (B, C_g, oH, oW) and the upsampled x (B, C, oH, oW).
        """
        check_feature('x', x, self.in_channels)
        check_feature('guide', guide, self.guide_channels, 'guide_channels')
        if self.semi_conv:
            height, width = x.shape[-2:]
            if not (guide.shape[-2] <= 2 * height and guide.shape[-1] <= 2 * width):
                raise ValueError(f'FreqFusion with semi_conv=True fuses x with a guide of at most '
                                 f'twice its size: x is {height}x{width}, guide '
                                 f'{tuple(guide.shape[-2:])}; use semi_conv=False for other '
                                 f'ratios')
        size = tuple(guide.shape[-2:])
        dtype = x.dtype
        compressed_hr = self.hr_channel_compressor(guide)
        compressed_lr = self.lr_channel_compressor(x)
        low, high, sampler_guide = self.kernel_scores(compressed_hr, compressed_lr, dtype)
        kernels = self.lowpass(low, dtype)
        if self.semi_conv:
            x_up = reassemble(x, kernels, self.lowpass_kernel, 2)
        else:
            align = None if self.upsample_mode.startswith('nearest') or \
                self.upsample_mode == 'area' else self.align_corners
            resized = (bilinear_resize(x, size, align) if self.upsample_mode == 'bilinear' else
                       F.interpolate(x, size=size, mode=self.upsample_mode, align_corners=align))
            x_up = reassemble(resized, kernels, self.lowpass_kernel, 1)
        guide_out = guide
        if self.use_high_pass:
            detail = guide - reassemble(guide, self.highpass(high, dtype), self.highpass_kernel, 1)
            guide_out = detail + guide if self.hr_residual else detail
        if self.feature_resample:
            x_up = self.dysampler(sampler_guide, compressed_lr, x_up)
        return kernels.flatten(1, 2), guide_out, x_up

    # -- the Upsampler seams ------------------------------------------------------------------
    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        return self.fuse(x, guide)[2]

    def checked_fuse(self, coarser: Tensor, finer: Tensor) -> Tuple[Tensor, Tensor]:
        """:meth:`fuse` under the Upsampler contract (checks, autocast guide cast, layout):
        ``(guide_out, x_up)`` in the memory format of ``coarser``; a ``finer`` more than 2 x
        ``coarser`` is reached as :meth:`Upsampler.within_reach` says."""
        coarser = self.within_reach(coarser, tuple(finer.shape[-2:]))
        self.check_inputs(coarser, finer, None)
        if finer.dtype != coarser.dtype:
            finer = finer.to(coarser.dtype)  # only under autocast: check_inputs refuses it else
        _, finer_out, coarser_up = self.fuse(coarser, finer)
        layout = memory_format_of(coarser)
        return finer_out.contiguous(memory_format=layout), coarser_up.contiguous(memory_format=layout)

    def merge(self, coarser: Tensor, finer: Tensor) -> Tensor:
        """The authors' FPN step: ``finer_out + up(coarser)``, the finer level high-pass
        enhanced (B, C, H, W); ``coarser`` and ``finer`` have the same channels here."""
        finer_out, coarser_up = self.checked_fuse(coarser, finer)
        return finer_out + coarser_up

    def merge_concatenated(self, coarser: Tensor, finer: Tensor) -> Tensor:
        """The authors' concatenating step (SegFormer / SegNeXt heads):
        ``cat([finer_out, up(coarser)])``, (B, C_g + C, H, W)."""
        return torch.cat(self.checked_fuse(coarser, finer), dim=1)
