"""A2U: affinity-aware upsampling (Dai, Lu, Shen, "Learning Affinity-Aware Upsampling for Deep
Image Matting", CVPR 2021).

A2U predicts CARAFE-style reassembly kernels from the high-resolution *encoder* feature
``guide`` (B, c, H, W) through a low-rank bilinear form of its second-order (affinity)
statistics. With s = ``up_kernel_size``, k = ``encode_kernel_size``, G = ``groups``:

1. Dynamic filters: average-pool ``guide`` to k x k and map it with a 1x1 conv (``filter_u``,
   ``filter_v``) to c per-sample k x k filters, or one shared by all channels (``share``).
   Each set filters ``guide`` depthwise with stride 2 (no bias; padding k // 2 for odd k,
   k / 2 - 1 for even k), then GroupNorm(32) and LeakyReLU(0.01): U, V (B, c, H/2, W/2).
2. Affinity: ``a = sum_c(U * V) / sqrt(c)`` (B, 1, H/2, W/2).
3. Kernels: global average pooling and a 1x1 conv with bias give a per-sample vector ``p`` of
   (2s)^2 G values; the logits are ``p[j] * a``.
   * upsampling (``upsample_scores``): pixel shuffle by 2 to s^2 G channels at H x W, then a
     softmax over the s^2 taps of the sigmoid (a softmax of a sigmoid, as in the authors' code;
     only the sigmoid when s = 1);
   * downsampling (``downsample_scores``, optional): a softmax over the (2s)^2 taps at H/2 x W/2.
4. Upsampling: the coarse feature ``x`` (B, C, H/2, W/2) is reassembled with the s x s kernels,
   CARAFE semantics (zero padding, window around (i // 2, j // 2)): the authors'
   ``biupsample_naive``, through :func:`mmdynup.ops.reassembly.reassemble`. Downsampling
   (the matting encoder): :func:`a2u_downsample` with :mod:`mmdynup.ops.downsample_reassembly`.

Kernel layout. The generator writes tap-major channels (``tap * G + g``); the authors' CUDA ops
read group-major (``g * taps + tap``). :class:`A2U` and :func:`a2u_downsample` read them as the
CUDA ops do, so the pair (generator, op) is the authors' network for every G (the two layouts
coincide for G = 1, the value in every released config).

Parameters (authors' names -> ours, see ``mmdynup/converters/a2u.py``): ``bnu.0`` / ``bnv.0``
(GroupNorm) -> ``norm_u`` / ``norm_v``; ``bconv_U.1`` / ``bconv_V.1`` -> ``filter_u`` /
``filter_v``; ``bconv_UP.1`` -> ``upsample_scores``; ``bconv_DP.1`` -> ``downsample_scores``.

Out of the authors' ``(out_d, out_u)`` an upsampler needs only ``out_u``; ``downsample_scores``
(the authors' module always has it) is built only with ``downsample_kernels=True`` (the matting
network, the converter), so a plain upsampler has no parameter without a gradient (FADE's
SegFormer run carried the unused conv; SAPA's parameter counts leave it out).

Sizes: the guide's sides must be even for the stride-2 filters; an odd side is padded by one
replicated row / column and the kernels cropped back (even sides: the authors' numbers
exactly). The guide's channels c must be a multiple of 32 (GroupNorm(32)). Scale 2 only.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import point_sampling
from ..ops.dispatch import is_exporting
from ..ops.downsample_reassembly import downsample_reassemble
from ..ops.reassembly import reassemble
from ..registry import register_upsampler
from .base import Upsampler, check_feature, check_positive_int, check_scale_factor, crop_to
from .indexnet import pad_to_even

#: GroupNorm groups of the authors' U / V normalisation.
NORM_GROUPS = 32
#: LeakyReLU slope after the normalisation (PyTorch's default, as in the authors' code).
NEGATIVE_SLOPE = 0.01


def check_guide_channels(name: str, channels: int) -> int:
    channels = check_positive_int(name, channels)
    if channels % NORM_GROUPS:
        multiples = sorted({max(NORM_GROUPS, channels // NORM_GROUPS * NORM_GROUPS),
                            (channels // NORM_GROUPS + 1) * NORM_GROUPS})
        raise ValueError(f'{name}={channels} must be a multiple of {NORM_GROUPS}: A2U normalises '
                         f'its encoder filters with GroupNorm({NORM_GROUPS}); use '
                         f'{" or ".join(map(str, multiples))} channels')
    return channels


def adaptive_average_pool(x: Tensor, size: int) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)``; while exporting, the same bins as two averaging
    matrices (bin i of n over L samples spans ``floor(i L / n) .. ceil((i + 1) L / n) - 1``),
    which ONNX takes for any L (its pooling needs L divisible by n). The matrices also serve
    where a deterministic backward is asked for (CUDA in deterministic mode: ATen's adaptive
    average pooling backward has no deterministic kernel there)."""
    if not is_exporting() and point_sampling.sampling_backward(x.device) != 'deterministic':
        return F.adaptive_avg_pool2d(x, size)
    rows, cols = (pooling_matrix(length, size, x) for length in x.shape[-2:])
    return torch.einsum('ih,bchw,jw->bcij', rows, x, cols)


def pooling_matrix(length: int, bins: int, like: Tensor) -> Tensor:
    """(bins, length) averaging weights of adaptive average pooling."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * length, bins, rounding_mode='floor')
    stop = torch.div((index + 1) * length + bins - 1, bins, rounding_mode='floor')
    position = torch.arange(length, device=like.device)
    inside = (position >= start[:, None]) & (position < stop[:, None])
    return inside.to(like.dtype) / (stop - start)[:, None].to(like.dtype)


class AffinityKernelGenerator(nn.Module):
    """A2U's kernel generator (the authors' ``InterChannelUpDown``): guide (B, c, H, W), H and W
    even -> ``(out_d, out_u)``; see the module docstring.

    Args:
        channels: c (a multiple of 32).
        up_kernel_size: s, the upsampling kernel size (the downsampling kernel is 2s).
        encode_kernel_size: k, the size of the dynamic filters.
        share: one dynamic filter for all channels (else one per channel).
        groups: G, kernel groups.
        downsample_kernels: build ``downsample_scores`` (needed for ``out_d``).
    """

    def __init__(self, channels: int, up_kernel_size: int = 3, encode_kernel_size: int = 6,
                 share: bool = True, groups: int = 1, downsample_kernels: bool = True) -> None:
        super().__init__()
        self.channels = check_guide_channels('guide_channels', channels)
        self.up_kernel_size = check_positive_int('up_kernel_size', up_kernel_size)
        self.encode_kernel_size = check_positive_int('encode_kernel_size', encode_kernel_size)
        self.groups = check_positive_int('groups', groups)
        for name, value in (('share', share), ('downsample_kernels', downsample_kernels)):
            if not isinstance(value, bool):
                raise TypeError(f'{name} must be True or False, got {value!r} '
                                f'({type(value).__name__})')
        self.share = share
        k = self.encode_kernel_size
        self.padding = k // 2 if k % 2 else k // 2 - 1
        filters = 1 if share else self.channels
        scores = (2 * self.up_kernel_size) ** 2 * self.groups
        self.norm_u = nn.GroupNorm(NORM_GROUPS, self.channels)
        self.norm_v = nn.GroupNorm(NORM_GROUPS, self.channels)
        self.upsample_scores = nn.Conv2d(self.channels, scores, 1)
        self.downsample_scores = nn.Conv2d(self.channels, scores, 1) if downsample_kernels \
            else None
        self.filter_u = nn.Conv2d(self.channels, filters, 1)
        self.filter_v = nn.Conv2d(self.channels, filters, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The A2U matting network's init: Xavier-normal convs with the LeakyReLU gain, zero
        biases; GroupNorm weight 1, bias 0."""
        gain = nn.init.calculate_gain('leaky_relu', NEGATIVE_SLOPE)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight, gain=gain)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, up_kernel_size={self.up_kernel_size}, '
                f'encode_kernel_size={self.encode_kernel_size}, share={self.share}, '
                f'groups={self.groups}')

    def check_guide(self, guide: Tensor) -> None:
        check_feature('guide', guide, self.channels, 'guide_channels')
        if guide.shape[-2] % 2 or guide.shape[-1] % 2:
            raise ValueError(f'guide has spatial size {tuple(guide.shape[-2:])}; the A2U kernel '
                             f'generator filters with stride 2 and needs even sides (pad it, as '
                             f'mmdynup.upsamplers.a2u.A2U does)')

    def filtered(self, guide: Tensor, stacked: Tensor, filter_conv: nn.Conv2d,
                 norm: nn.GroupNorm) -> Tensor:
        """Per-sample depthwise stride-2 filtering of the guide, normalised: (B, c, H/2, W/2).

        ``stacked`` is the guide as one sample of B * c channels (channels-last: the CPU's
        depthwise convolution with as many groups runs about 10x faster, backward included).
        """
        batch, channels = guide.shape[:2]
        k = self.encode_kernel_size
        filters = filter_conv(adaptive_average_pool(guide, k))  # (B, c or 1, k, k)
        filters = filters.expand(batch, channels, k, k).reshape(batch * channels, 1, k, k)
        out = F.conv2d(stacked, filters, stride=2, padding=self.padding,
                       groups=batch * channels)
        out = out.view(batch, channels, *out.shape[-2:])
        return F.leaky_relu(norm(out), NEGATIVE_SLOPE)

    def affinity(self, guide: Tensor) -> Tuple[Tensor, Tensor]:
        """The affinity map a (B, 1, H/2, W/2) and the pooled guide (B, c, 1, 1)."""
        batch, channels, height, width = guide.shape
        stacked = guide.reshape(1, batch * channels, height, width).contiguous(
            memory_format=torch.channels_last)
        u = self.filtered(guide, stacked, self.filter_u, self.norm_u)
        v = self.filtered(guide, stacked, self.filter_v, self.norm_v)
        affinity = (u * v).sum(dim=1, keepdim=True) / math.sqrt(self.channels)
        return affinity, guide.mean(dim=(2, 3), keepdim=True)

    def upsample_kernels(self, affinity: Tensor, pooled: Tensor,
                         dtype: Optional[torch.dtype] = None) -> Tensor:
        """``out_u`` (B, s^2 G, H, W), tap-major; normalised in at least float32 and returned
        in ``dtype`` (default: the logits' dtype)."""
        logits = F.pixel_shuffle(self.upsample_scores(pooled) * affinity, 2)
        batch, _, height, width = logits.shape
        taps = self.up_kernel_size ** 2
        compute = torch.promote_types(logits.dtype, torch.float32)
        scores = torch.sigmoid(logits.to(compute)).view(batch, taps, self.groups, height, width)
        if self.up_kernel_size > 1:
            scores = scores.softmax(dim=1)
        return scores.view(batch, taps * self.groups, height, width).to(dtype or logits.dtype)

    def downsample_kernels(self, affinity: Tensor, pooled: Tensor,
                           dtype: Optional[torch.dtype] = None) -> Tensor:
        """``out_d`` (B, (2s)^2 G, H/2, W/2), tap-major, softmax over the (2s)^2 taps."""
        if self.downsample_scores is None:
            raise ValueError('this A2U kernel generator was built with downsample_kernels=False; '
                             'build it with downsample_kernels=True to predict out_d')
        logits = self.downsample_scores(pooled) * affinity
        batch, _, height, width = logits.shape
        taps = (2 * self.up_kernel_size) ** 2
        compute = torch.promote_types(logits.dtype, torch.float32)
        kernels = logits.to(compute).view(batch, taps, self.groups, height, width).softmax(dim=1)
        return kernels.view(batch, taps * self.groups, height, width).to(dtype or logits.dtype)

    def forward(self, guide: Tensor) -> Tuple[Tensor, Tensor]:
        """guide (B, c, H, W), H and W even -> ``(out_d, out_u)``, the authors' output."""
        self.check_guide(guide)
        affinity, pooled = self.affinity(guide)
        return (self.downsample_kernels(affinity, pooled),
                self.upsample_kernels(affinity, pooled))


def group_major(kernels: Tensor, groups: int) -> Tensor:
    """Tap-major generator output (B, taps * G, H, W) read as the authors' CUDA ops read it:
    (B, G, taps, H, W) with channel ``g * taps + tap`` (the same for G = 1)."""
    batch, channels, height, width = kernels.shape
    return kernels.view(batch, groups, channels // groups, height, width)


def a2u_downsample(x: Tensor, out_d: Tensor, up_kernel_size: int, groups: int = 1,
                   impl: Optional[str] = None) -> Tensor:
    """The A2U matting encoder's downsampling: ``bidownsample_naive(x, out_d, 2s, G, 2)``.

    Args:
        x: (B, C, H, W) encoder feature (C divisible by G).
        out_d: (B, (2s)^2 G, ceil(H/2), ceil(W/2)) from :meth:`AffinityKernelGenerator.forward`.
        up_kernel_size: s.
        groups: G.

    Returns:
        (B, C, ceil(H/2), ceil(W/2)); see :mod:`mmdynup.ops.downsample_reassembly`.
    """
    return downsample_reassemble(x, group_major(out_d, groups), 2 * up_kernel_size, impl=impl)


@register_upsampler
class A2U(Upsampler):
    """A2U upsampling (Dai et al., CVPR 2021): CARAFE reassembly of ``x`` with the
    affinity-aware kernels of the high-resolution encoder feature ``guide``.

    Args:
        in_channels: C of the coarse feature ``x`` (divisible by ``groups``).
        scale_factor: must be 2.
        guide_channels: c of the guide (a multiple of 32; defaults to ``in_channels``).
        up_kernel_size: reassembly kernel size s (odd; 3 in every released config).
        encode_kernel_size: dynamic filter size k (6 in the released ``adobe.yaml``, the FADE
            SegFormer runs; 5 in the authors' ``config/default.py``).
        share: one dynamic filter shared by all channels (``adobe.yaml``: True).
        groups: kernel groups G.
        downsample_kernels: also build the downsampling-kernel conv (``out_d``; unused by
            upsampling, for the matting encoder and for the authors' checkpoints).

    Shapes:
        x (B, C, H, W), guide (B, c, oH, oW) -> (B, C, oH, oW), oH <= 2H, oW <= 2W.

    Example:
        >>> import torch
        >>> up = A2U(16, guide_channels=32)
        >>> up(torch.randn(2, 16, 5, 6), torch.randn(2, 32, 10, 11)).shape
        torch.Size([2, 16, 10, 11])
    """

    requires_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, up_kernel_size: int = 3,
                 encode_kernel_size: int = 6, share: bool = True, groups: int = 1,
                 downsample_kernels: bool = False) -> None:
        if check_scale_factor(scale_factor) != 2:
            raise ValueError(f'A2U predicts its kernels with stride-2 filters and a 2 x pixel '
                             f'shuffle, so scale_factor must be 2, got {scale_factor!r}; chain '
                             f'two upsamplers for x4')
        super().__init__(in_channels, scale_factor, guide_channels)
        up_kernel_size = check_positive_int('up_kernel_size', up_kernel_size)
        if up_kernel_size % 2 == 0:
            raise ValueError(f'up_kernel_size must be odd (the reassembly window is centred on '
                             f'the low-resolution pixel), got {up_kernel_size}; use '
                             f'{up_kernel_size - 1} or {up_kernel_size + 1}')
        self.kernel_generator = AffinityKernelGenerator(
            self.guide_channels, up_kernel_size, encode_kernel_size, share, groups,
            downsample_kernels)
        if self.in_channels % self.kernel_generator.groups:
            raise ValueError(f'in_channels={self.in_channels} must be divisible by '
                             f'groups={groups}: channel c uses the kernels of group c // (C / G)')

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, reassembly=CARAFE'

    def predict_kernels(self, guide: Tensor, size: Tuple[int, int],
                        dtype: torch.dtype) -> Tensor:
        """Guide (B, c, oH, oW) -> group-major kernels (B, G, s^2, oH, oW)."""
        affinity, pooled = self.kernel_generator.affinity(pad_to_even(guide))
        out_u = self.kernel_generator.upsample_kernels(affinity, pooled, dtype)
        return crop_to(group_major(out_u, self.kernel_generator.groups), size)

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        kernels = self.predict_kernels(guide, size, x.dtype)
        return reassemble(x, kernels, self.kernel_generator.up_kernel_size, self.scale_factor)
