"""DySample: upsampling by learned point sampling (Liu, Lu, Fu, Cao, "Learning to Upsample by
Learning to Sample", ICCV 2023; authors' code: tiny-smart/dysample ``dysample.py``).

Every high-resolution pixel ``(i * s + a, j * s + b)`` of channel group ``g`` is a bilinear sample
(``align_corners=False``, border padding) of the low-resolution input at

    centre of pixel (i, j)  +  init_pos[g, a, b]  +  scope * offset[g, a, b](i, j)

in low-resolution pixels, ``(x, y)`` order. ``init_pos`` (a buffer) starts at the bilinear
positions ``((b + 0.5) / s - 0.5, (a + 0.5) / s - 0.5)``, so zero offsets reproduce bilinear
interpolation. The offsets come from a 1x1 conv, either on ``x`` with ``2 * G * s^2`` outputs
("linear + pixel shuffle", style ``'lp'``) or on the pixel-shuffled ``x`` (C / s^2 channels) with
``2 * G`` outputs at high resolution (``'pl'``). The scope is the static factor 0.25 or, with
``dyscope``, the dynamic ``0.5 * sigmoid(scope_conv(.))``. The paper's four variants are DySample
(lp), DySample+ (lp, dyscope), DySample-S (pl) and DySample-S+ (pl, dyscope); each has a
registered preset below so that configs and the README table can name them.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor, nn

from ..ops.point_sampling import subpixel_point_sample
from ..ops.pointwise import pointwise
from ..registry import register_upsampler
from ..checks import check_divisible, check_positive_int
from .base import Upsampler

STYLES = ('lp', 'pl')
STATIC_SCOPE = 0.25
DYNAMIC_SCOPE = 0.5


@register_upsampler
class DySample(Upsampler):
    """DySample (ICCV 2023), unguided: ``forward(x) -> (B, C, s * H, s * W)``.

    Args:
        in_channels: C of ``x``; divisible by ``groups`` (and by ``scale_factor ** 2`` for
            ``'pl'``).
        scale_factor: s (any integer >= 2).
        guide_channels: ignored (unguided); accepted so that one config fits every upsampler.
        style: ``'lp'`` (offsets from ``x``, then pixel shuffle) or ``'pl'`` (pixel shuffle, then
            offsets at high resolution; s^2 times fewer conv input channels).
        groups: G channel groups, each with its own sampling positions.
        dyscope: dynamic scope ``0.5 * sigmoid(scope(.))`` instead of the static 0.25.
        scope_bias: give the scope conv a bias (the authors' segmentation / detection forks do;
            the standalone repository does not).

    Example:
        >>> up = DySample(64, scale_factor=2)
        >>> up(torch.randn(2, 64, 13, 10)).shape
        torch.Size([2, 64, 26, 20])
    """

    requires_guide: ClassVar[bool] = False

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, style: str = 'lp', groups: int = 4,
                 dyscope: bool = False, scope_bias: bool = False) -> None:
        super().__init__(in_channels, scale_factor, guide_channels)
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES} ('lp': linear then pixel shuffle, "
                             f"'pl': pixel shuffle then linear), got {style!r}")
        self.style = style
        self.groups = check_positive_int('groups', groups)
        check_divisible('in_channels', self.in_channels, self.groups, 'groups')
        s = self.scale_factor
        if style == 'pl' and self.in_channels % (s * s):
            raise ValueError(f"in_channels={self.in_channels} must be divisible by "
                             f"scale_factor ** 2={s * s} for style='pl' (the offsets are predicted "
                             f"from the pixel-shuffled input); use style='lp' or another "
                             f"in_channels")
        self.dyscope = bool(dyscope)
        if style == 'pl':
            conv_channels, offset_channels = self.in_channels // (s * s), 2 * self.groups
        else:
            conv_channels, offset_channels = self.in_channels, 2 * self.groups * s * s
        self.offset = nn.Conv2d(conv_channels, offset_channels, 1)
        self.scope = (nn.Conv2d(conv_channels, offset_channels, 1, bias=bool(scope_bias))
                      if self.dyscope else None)
        self.register_buffer('init_pos', self.bilinear_positions(s, self.groups))
        self.reset_parameters()

    @staticmethod
    def bilinear_positions(scale_factor: int, groups: int,
                           dtype: Optional[torch.dtype] = None) -> Tensor:
        """Initial sub-pixel positions (1, 2 * G * s^2, 1, 1), channel order (component, group,
        row a, column b): ``x = (b + 0.5) / s - 0.5``, ``y = (a + 0.5) / s - 0.5``; in the
        default dtype unless ``dtype`` is given (the buffer is float32-rounded, as upstream)."""
        s = scale_factor
        steps = (torch.arange(s, dtype=dtype or torch.get_default_dtype()) - (s - 1) / 2) / s
        x_component = steps.view(1, 1, s).expand(groups, s, s)
        y_component = steps.view(1, s, 1).expand(groups, s, s)
        return torch.stack([x_component, y_component]).reshape(1, -1, 1, 1)

    def reset_parameters(self) -> None:
        """The authors' init: offset weights N(0, 0.001), offset bias 0, scope conv all zeros."""
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        if self.scope is not None:
            nn.init.zeros_(self.scope.weight)
            if self.scope.bias is not None:
                nn.init.zeros_(self.scope.bias)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, style={self.style!r}, groups={self.groups}, '
                f'dyscope={self.dyscope}')

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        batch, channels, height, width = x.shape
        s, groups = self.scale_factor, self.groups
        features = x
        if self.style == 'pl':
            # A 1x1 conv of pixel_shuffle(x) reads, for sub-pixel (a, b), channels c s^2 + a s + b
            # of x: as (C / s^2, s^2 H, W) rows x needs no shuffle, and the conv's output comes
            # in lp's (component, group, a, b, H, W) order.
            features = x.reshape(batch, channels // (s * s), s * s * height, width)
        if self.scope is not None:
            offsets, scope = pointwise(features, self.offset, self.scope)
            offsets, offset_scale = offsets * scope.sigmoid(), DYNAMIC_SCOPE
        else:
            offsets, offset_scale = pointwise(features, self.offset)[0], STATIC_SCOPE
        # As a (B, G, H, s_row, W, s_col, 2) view: the pixel shuffle, the move of (x, y) last
        # and the parent centres happen in the sampling's one pass over the grid.
        offsets = offsets.reshape(batch, 2, groups, s, s, height, width)
        offsets = offsets.permute(0, 2, 5, 3, 6, 4, 1)
        initial = self.init_pos.view(2, groups, s, s).permute(1, 2, 3, 0)[:, None, :, None]
        sampled = subpixel_point_sample(x, offsets, s, size, groups, padding_mode='border',
                                        initial=initial, offset_scale=offset_scale)
        return sampled.reshape(batch, channels, *size)


class _DySamplePreset(DySample):
    """A paper-named DySample variant: ``style`` and ``dyscope`` fixed by the class."""

    preset_style: ClassVar[str]
    preset_dyscope: ClassVar[bool]

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, groups: int = 4,
                 scope_bias: bool = False) -> None:
        super().__init__(in_channels, scale_factor, guide_channels, style=self.preset_style,
                         groups=groups, dyscope=self.preset_dyscope, scope_bias=scope_bias)


@register_upsampler
class DySamplePlus(_DySamplePreset):
    """DySample+ (ICCV 2023): style ``'lp'`` with dynamic scope; see :class:`DySample`."""

    preset_style = 'lp'
    preset_dyscope = True


@register_upsampler
class DySampleS(_DySamplePreset):
    """DySample-S (ICCV 2023): style ``'pl'`` with static scope; see :class:`DySample`."""

    preset_style = 'pl'
    preset_dyscope = False


@register_upsampler
class DySampleSPlus(_DySamplePreset):
    """DySample-S+ (ICCV 2023): style ``'pl'`` with dynamic scope; see :class:`DySample`."""

    preset_style = 'pl'
    preset_dyscope = True
