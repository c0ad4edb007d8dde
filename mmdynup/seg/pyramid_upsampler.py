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
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

from mmseg.models.utils import resize
from torch import Tensor, nn

from ..upsamplers.base import check_positive_int
from ..upsamplers.host_config import build_head_upsampler, upsample_like


def cascade_steps(num_levels: int) -> List[Tuple[int, int]]:
    """``(source level, target level)`` of every x2 step, in module order (coarsest first)."""
    return [(source, target)
            for source in range(num_levels - 1, 0, -1)
            for target in range(source - 1, -1, -1)]


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
    ``H_{j-1} <= 2 H_j`` -> a list of L tensors (B, channels, H_0, W_0) (level 0 unchanged).
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
        if upsample_cfg is None:
            self.upsamplers = None
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
        resized = list(levels)
        # A source's steps are consecutive, finest target last: resized[source] climbs in place.
        for (source, target), upsampler in zip(self.steps, self.upsamplers):
            resized[source] = upsample_like(upsampler, resized[source], levels[target])
        return resized
