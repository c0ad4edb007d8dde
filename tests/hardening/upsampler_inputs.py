"""Every registered upsampler, built with its defaults at a small width, and inputs for it."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from mmdynup import build_upsampler, list_upsamplers
from mmdynup.upsamplers.base import Upsampler

#: Smallest width that every default builds with (SAPABase normalises with GroupNorm(32)).
CHANNELS = 32
UPSAMPLERS = list_upsamplers()


def build(name: str, scale_factor: int = 2, channels: int = CHANNELS, **arguments) -> Upsampler:
    """``name`` with its defaults (plus ``arguments``), ``in_channels = guide_channels``."""
    return build_upsampler(dict(type=name, in_channels=channels, scale_factor=scale_factor,
                                guide_channels=channels, **arguments))


def make_inputs(upsampler: Upsampler, batch: int = 2, height: int = 7, width: int = 9,
                dtype: torch.dtype = torch.float32,
                seed: int = 0) -> Tuple[Tensor, Optional[Tensor]]:
    """``x`` (B, C, H, W) and, for guided upsamplers, a guide (B, C_g, sH, sW); odd sizes."""
    generator = torch.Generator().manual_seed(seed)
    s = upsampler.scale_factor
    x = torch.randn(batch, upsampler.in_channels, height, width, generator=generator)
    guide = None
    if upsampler.requires_guide:
        guide = torch.randn(batch, upsampler.guide_channels, s * height, s * width,
                            generator=generator)
        guide = guide.to(dtype)
    return x.to(dtype), guide


def run(upsampler: Upsampler, x: Tensor, guide: Optional[Tensor]) -> Tensor:
    """Call ``upsampler`` the way a head does: with the guide only when it needs one."""
    return upsampler(x, guide) if upsampler.requires_guide else upsampler(x)
