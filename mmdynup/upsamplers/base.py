"""The calling convention every mmdynup upsampler follows, and its input checks.

Convention (all upsamplers, so that no head or neck branches on the upsampler type):

* constructor: ``(in_channels, scale_factor=2, guide_channels=None, **paper_arguments)``;
  ``guide_channels`` defaults to ``in_channels`` for guided operators and is ignored by the others;
* ``forward(x, guide=None, size=None)``: ``x`` is the low-resolution feature (B, C, H, W),
  ``guide`` the high-resolution feature (B, C_g, oH, oW) that guided operators need, and ``size``
  an optional output size ``(oH, oW)`` with ``oH <= s * H`` and ``oW <= s * W``;
* output: (B, C_out, oH, oW), ``(oH, oW) = size`` if given, else the guide's size if a guide is
  given, else ``(s * H, s * W)`` (``(int(H * s), int(W * s))`` for the operators with
  ``fractional_scale``, which also take a real s such as 1.5); dense in the memory format of
  ``x`` (``channels_last`` in, ``channels_last`` out), in ``x``'s dtype outside autocast. Under
  ``torch.autocast`` a guide of another floating dtype is accepted and cast to ``x``'s dtype.

Semantics of a size smaller than ``s x`` the input (odd FPN levels such as 25 x 19 under
13 x 10): learned upsamplers compute the ``s x`` output and keep its top-left ``(oH, oW)`` window,
so high-resolution pixel (i, j) always belongs to low-resolution pixel (i // s, j // s), the
convention of stride-s convolutions with ``ceil`` output sizes. The interpolation baselines
instead resample to exactly ``size`` (``F.interpolate(size=...)``), as mmseg's ``UPerHead`` and
mmdet's ``FPN`` do, so that a head with a bilinear / nearest upsampler equals the upstream one.
Unguided upsamplers accept a ``guide`` and use only its spatial size.
"""
from __future__ import annotations

import math
import numbers
from typing import ClassVar, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..checks import (check_divisible, check_feature, check_odd_kernel,  # noqa: F401
                      check_positive_int, check_real_scale_factor, check_scale_factor)
from ..compat import is_autocast_enabled
from ..ops.point_sampling import bilinear_resize

SizeLike = Union[int, Sequence[int], torch.Size]


def _side(value) -> int:
    # A symbolic side (torch.export with dynamic shapes) stays symbolic: int() would pin it.
    return value if isinstance(value, torch.SymInt) else int(value)


def normalise_size(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, (numbers.Integral, torch.SymInt)) and not isinstance(size, bool):
        return _side(size), _side(size)
    try:
        height, width = (_side(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f'size must be an int or a pair (height, width), got {size!r}') from None
    return height, width


class Upsampler(nn.Module):
    """Base class: argument checks shared by every upsampler.

    Subclasses set ``requires_guide`` and implement ``upsample(x, guide, size)`` where ``size`` is
    already resolved to ``(oH, oW)`` and ``guide`` (guided operators) is checked to have it.

    Args:
        in_channels: channels C of the low-resolution input ``x``.
        scale_factor: integer upsampling ratio s >= 2.
        guide_channels: channels of the high-resolution guide (guided operators only; defaults to
            ``in_channels``; ignored by unguided operators so that one config fits all).
    """

    requires_guide: ClassVar[bool] = False
    #: Smallest accepted ``scale_factor`` (1 for operators that also filter at s = 1).
    minimum_scale_factor: ClassVar[int] = 2
    #: True for operators that accept any real ``scale_factor`` >= ``minimum_scale_factor``
    #: (LDA-AQU: 1.5, 3.0, ...); the full output is then ``int(H * s) x int(W * s)``
    #: (:meth:`full_size`), and ``size`` may ask for any part of it.
    fractional_scale: ClassVar[bool] = False

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None) -> None:
        super().__init__()
        self.in_channels = check_positive_int('in_channels', in_channels)
        check = check_real_scale_factor if self.fractional_scale else check_scale_factor
        self.scale_factor = check(scale_factor, self.minimum_scale_factor)
        if self.requires_guide:
            self.guide_channels = check_positive_int(
                'guide_channels', in_channels if guide_channels is None else guide_channels)
        else:
            self.guide_channels = None

    @property
    def out_channels(self) -> int:
        return self.in_channels

    def extra_repr(self) -> str:
        text = f'in_channels={self.in_channels}, scale_factor={self.scale_factor}'
        if self.requires_guide:
            text += f', guide_channels={self.guide_channels}'
        return text

    def forward(self, x: Tensor, guide: Optional[Tensor] = None,
                size: Optional[SizeLike] = None) -> Tensor:
        """Upsample ``x`` (B, C, H, W) to (B, C_out, oH, oW); see the module docstring.

        The output is dense in the memory format of ``x`` (:func:`memory_format_of`).
        """
        size = self.check_inputs(x, guide, size)
        if guide is not None and guide.dtype != x.dtype:
            guide = guide.to(x.dtype)  # only under autocast: check_inputs refuses it otherwise
        out = self.upsample(x, guide, size)
        return out.contiguous(memory_format=memory_format_of(x))

    def full_size(self, height, width) -> Tuple[int, int]:
        """The output size without ``size``: ``(s * H, s * W)``; ``(int(H * s), int(W * s))``
        for a fractional ``s`` (``fractional_scale`` operators), as ``int`` truncates."""
        s = self.scale_factor
        if isinstance(s, float):
            return int(height * s), int(width * s)
        return s * height, s * width

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        raise NotImplementedError(f'{type(self).__name__} must implement upsample()')

    def merge(self, coarser: Tensor, finer: Tensor) -> Tensor:
        """One top-down merge of a feature pyramid (FPN, UPerNet): ``finer + up(coarser)``.

        ``coarser`` (B, C, h, w) is upsampled to the size of ``finer`` (B, C, H, W), ``H <= s h``,
        guided by ``finer`` when the operator needs a guide; returns (B, C, H, W). Heads and necks
        call only this, so an operator that also transforms the finer feature it merges into
        (FreqFusion) overrides it and no host branches on the operator type.
        """
        return finer + self.upsample_like(coarser, finer)

    #: How a head that concatenates a pyramid (SegFormer) chains this operator. False: one
    #: operator per (source level, target level) x2 step, every level upsampled on its own
    #: (FADE, SAPA). True: one operator per target level, upsampling the concatenation of all
    #: coarser levels with :meth:`merge_concatenated` (FreqFusion's concatenating form).
    concatenates_pyramid: ClassVar[bool] = False

    def merge_concatenated(self, coarser: Tensor, finer: Tensor) -> Tensor:
        """One step of a concatenating pyramid: ``cat([finer, up(coarser)])`` (B, C_f + C, H, W).

        ``coarser`` (B, C, h, w) is upsampled to the size of ``finer`` (B, C_f, H, W), guided by
        it when the operator needs a guide; an operator that also transforms ``finer``
        (FreqFusion) overrides this, as it does :meth:`merge`.
        """
        return torch.cat([finer, self.upsample_like(coarser, finer)], dim=1)

    def upsample_like(self, x: Tensor, finer: Tensor) -> Tensor:
        """``x`` (B, C, h, w) upsampled to the size of ``finer`` (B, C_g, H, W), guided by
        ``finer`` when the operator needs a guide: (B, C_out, H, W). The step every host takes.

        Within the operator's reach (``H <= s h`` and ``W <= s w``) this is exactly
        ``self(x, guide, size=(H, W))``. A pyramid level more than s x its coarser neighbour
        (mmseg's UPerHead test stacks 45 x 45 over 21 x 21) is reached by resizing ``x``
        bilinearly first, to ``ceil(H / s) x ceil(W / s)`` on the sides that need it, so that the
        one learned s x step still lands on ``finer`` and is guided by it.
        """
        guide = finer if self.requires_guide else None
        size = tuple(finer.shape[-2:])
        return self(self.within_reach(x, size), guide=guide, size=size)

    def within_reach(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        """``x`` (B, C, h, w) itself when one step reaches ``size`` = (H, W); otherwise ``x``
        resized bilinearly to ``ceil(H / s) x ceil(W / s)`` on the sides that need it (the rule
        of :meth:`upsample_like`, for operators that override :meth:`merge`)."""
        height, width = size
        low_height, low_width = x.shape[-2:]
        full_height, full_width = self.full_size(low_height, low_width)
        if height <= full_height and width <= full_width:
            return x
        s = self.scale_factor
        reach = (max(low_height, math.ceil(height / s)), max(low_width, math.ceil(width / s)))
        return bilinear_resize(x, reach, align_corners=False)

    # -- checks -------------------------------------------------------------------------------
    def check_inputs(self, x: Tensor, guide: Optional[Tensor],
                     size: Optional[SizeLike]) -> Tuple[int, int]:
        """Validate ``x``, ``guide`` and ``size``; return the output size ``(oH, oW)``."""
        name = type(self).__name__
        check_feature('x', x, self.in_channels)
        self._check_parameters_match(x)
        if guide is None and self.requires_guide:
            raise ValueError(f'{name} is a guided upsampler: call it as up(x, guide) with the '
                             f'high-resolution guide feature (B, {self.guide_channels}, oH, oW); '
                             f'got guide=None')
        if guide is not None:
            check_feature('guide', guide, self.guide_channels if self.requires_guide else None,
                          'guide_channels')
            if guide.device != x.device:
                raise ValueError(f'x is on {x.device} but guide is on {guide.device}; move both '
                                 f'to the same device')
            if guide.dtype != x.dtype and not is_autocast_enabled(x.device.type):
                raise TypeError(f'x has dtype {x.dtype} but guide has dtype {guide.dtype}; cast '
                                f'both to the same dtype, or run under torch.autocast')
            if guide.shape[0] != x.shape[0]:
                raise ValueError(f'x has batch size {x.shape[0]} but guide has {guide.shape[0]}')
        height, width = x.shape[-2:]
        s = self.scale_factor
        full = self.full_size(height, width)
        source = 'size'
        if size is None:
            source = 'guide size' if guide is not None else 'size'
            size = tuple(guide.shape[-2:]) if guide is not None else full
        size = normalise_size(size)
        if not (1 <= size[0] <= full[0] and 1 <= size[1] <= full[1]):
            raise ValueError(f'{source}={size} is not reachable from an input x of '
                             f'{height}x{width} at scale_factor={s}: each side must be between 1 '
                             f'and {s} x the input ({full[0]}x{full[1]})')
        if guide is not None and tuple(guide.shape[-2:]) != size:
            raise ValueError(f'guide has spatial size {tuple(guide.shape[-2:])} but the output '
                             f'size is {size}; pass a guide of the output size (or size=None)')
        return size

    def _check_parameters_match(self, x: Tensor) -> None:
        parameter = next(self.parameters(), None)
        if parameter is None:
            return
        if parameter.device != x.device:
            raise ValueError(f'x is on {x.device} but {type(self).__name__} parameters are on '
                             f'{parameter.device}; call .to({x.device}) on the module or move x')
        if (parameter.dtype != x.dtype and not is_autocast_enabled(x.device.type)):
            raise TypeError(f'x has dtype {x.dtype} but {type(self).__name__} parameters have '
                            f'dtype {parameter.dtype}; cast the module (.to({x.dtype})), cast x, '
                            f'or run under torch.autocast')


def memory_format_of(tensor: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a (B, C, H, W) tensor laid out NHWC (and not also NCHW, as
    when C or H * W is 1), else ``torch.contiguous_format``: the layout of an upsampler's output
    for that input."""
    if (tensor.dim() == 4 and not tensor.is_contiguous()
            and tensor.is_contiguous(memory_format=torch.channels_last)):
        return torch.channels_last
    return torch.contiguous_format


def crop_to(tensor: Tensor, size: Tuple[int, int]) -> Tensor:
    """Keep the top-left ``size`` window of a (..., H, W) tensor (no copy when it already fits)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return tensor[..., :size[0], :size[1]]
