"""Bring every level of a feature pyramid to the finest level's size, by direct interpolation
(mmseg's ``SegformerHead`` and ``UPerHead`` fusion) or by cascades of x2 upsamplers guided by the
finer levels (the SegFormer head of FADE, Lu et al., ECCV 2022, and SAPA, Lu et al., NeurIPS
2022; authors' code: poppinace/fade ``segformer/segformer_head.py``).

Cascade with L levels (level 0 finest, strides 4, 8, 16, 32 for L = 4): level j goes up j times
by x2, step by step through the sizes of levels j-1, ..., 0, each step guided by the level it
lands on. That takes L (L - 1) / 2 upsamplers (six for L = 4), kept in the authors' order,
coarsest source first::

    0: 3->2   1: 3->1   2: 3->0   3: 2->1   4: 2->0   5: 1->0

(FADE's ``upsamplers[0..2]`` take c4 to 1/16, 1/8, 1/4 guided by c3, c2, c1; ``[3..4]`` take c3
to 1/8, 1/4 guided by c2, c1; ``[5]`` takes c2 to 1/4 guided by c1.)

Operators that declare ``concatenates_pyramid`` (FreqFusion, Chen et al., TPAMI 2024: the
concatenating form of its README for SegFormer / SegNeXt heads) instead take L - 1 steps, one per
target level, coarsest first: step t upsamples the concatenation of all coarser levels
((L - 1 - t) x channels) to level t and ``merge_concatenated`` puts level t (which the operator may
transform) in front of it; the result is split back into L levels.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

from mmseg.models.utils import resize
from torch import Tensor, nn

from ..checks import check_positive_int
from ..upsamplers.host_config import (build_head_upsampler, resolve_upsampler_class,
                                      upsample_like)


def cascade_steps(num_levels: int) -> List[Tuple[int, int]]:
    """``(source level, target level)`` of every x2 step, in module order (coarsest first)."""
    return [(source, target)
            for source in range(num_levels - 1, 0, -1)
            for target in range(source - 1, -1, -1)]


def concatenates_pyramid(upsample_cfg: Optional[Mapping], key: str, owner: str) -> bool:
    """Whether ``upsample_cfg`` names an operator with ``concatenates_pyramid`` (a config
    without a resolvable type is left to :func:`build_head_upsampler` to report)."""
    if not isinstance(upsample_cfg, Mapping) or 'type' not in upsample_cfg:
        return False
    return resolve_upsampler_class(upsample_cfg['type'], key, owner).concatenates_pyramid


class PyramidUpsampler(nn.Module):
    """Resize levels 1..L-1 of a pyramid to the size of level 0.

    Args:
        num_levels: L, the number of pyramid levels (>= 1).
        channels: channels of every level (the head's ``channels``); upsamplers and their guides
            have this width.
        upsample_cfg: ``None`` for direct interpolation of each level to level 0's size (as
            mmseg does), or an upsampler config (``dict(type='FADE')``) for the guided x2
            cascades of the module docstring.
        interpolate_mode: ``F.interpolate`` mode of the direct path.
        align_corners: ``align_corners`` of the direct path.
        key: config key of ``upsample_cfg`` in the owning head (for error messages).
        owner: class name of the owning head (for error messages).

    Shapes: a sequence of L tensors (B, channels, H_j, W_j), level 0 the largest, each
    ``H_{j-1} <= 2 H_j`` -> a list of L tensors (B, channels, H_0, W_0) (level 0 unchanged,
    except by a concatenating operator, which enhances every level it lands on).
    """

    def __init__(self, num_levels: int, channels: int,
                 upsample_cfg: Optional[Mapping] = None, interpolate_mode: str = 'bilinear',
                 align_corners: bool = False, key: str = 'upsample_cfg',
                 owner: str = 'PyramidUpsampler') -> None:
        super().__init__()
        self.num_levels = check_positive_int('num_levels', num_levels)
        self.interpolate_mode = interpolate_mode
        self.align_corners = align_corners
        self.steps = cascade_steps(self.num_levels)
        self.channels = channels
        self.concatenating = concatenates_pyramid(upsample_cfg, key, owner)
        if upsample_cfg is None:
            self.upsamplers = None
        elif self.concatenating:
            # Step t: the (L - 1 - t) coarser levels, concatenated, to level t (coarsest first).
            self.steps = [(target + 1, target) for target in range(self.num_levels - 2, -1, -1)]
            self.upsamplers = nn.ModuleList(
                build_head_upsampler(upsample_cfg, key, owner,
                                     in_channels=(self.num_levels - 1 - target) * channels,
                                     guide_channels=channels, scale_factor=2)
                for _, target in self.steps)
        else:
            self.upsamplers = nn.ModuleList(
                build_head_upsampler(upsample_cfg, key, owner, in_channels=channels,
                                     guide_channels=channels, scale_factor=2)
                for _ in self.steps)

    def extra_repr(self) -> str:
        if self.upsamplers is None:
            return (f'num_levels={self.num_levels}, direct {self.interpolate_mode} '
                    f'interpolation, align_corners={self.align_corners}')
        return f'num_levels={self.num_levels}, steps (source, target)={self.steps}'

    def forward(self, levels: Sequence[Tensor]) -> List[Tensor]:
        if len(levels) != self.num_levels:
            raise ValueError(f'expected {self.num_levels} pyramid levels, got {len(levels)}')
        size = levels[0].shape[2:]
        if self.upsamplers is None:
            return [levels[0]] + [resize(level, size=size, mode=self.interpolate_mode,
                                         align_corners=self.align_corners)
                                  for level in levels[1:]]
        if self.concatenating:
            stack = levels[-1]
            for (_, target), upsampler in zip(self.steps, self.upsamplers):
                stack = upsampler.merge_concatenated(stack, levels[target])
            return list(stack.split(self.channels, dim=1))
        resized = list(levels)
        # A source's steps are consecutive, finest target last: resized[source] climbs in place.
        for (source, target), upsampler in zip(self.steps, self.upsamplers):
            resized[source] = upsample_like(upsampler, resized[source], levels[target])
        return resized
