"""The toy encoder-decoder of FADE's upsampling study (Lu et al., ECCV 2022, Sec. 4 "toy-level
study"; IJCV 2024): stride-2 conv stages down, one x2 upsampler per stage up, no skip connections.

Layout, with L levels of widths ``w_0 .. w_{L-1}`` (finest first, level i at stride 2^i)::

    encoder   e_0 = conv(image)                      (B, w_0, H, W)
              e_i = conv(conv_stride2(e_{i-1}))       (B, w_i, H / 2^i, W / 2^i)
    decoder   x = bottleneck(e_{L-1})                 (1x1 convs through ``bottleneck_channels``)
              step i = L-2 .. 0:   x = conv_i(up_i(reduce_i(x), guide=e_i))

``up_i`` is any registered upsampler built by the heads' common constructor
(:func:`~mmdynup.upsamplers.host_config.build_head_upsampler`: ``in_channels = guide_channels =
w_i``, ``scale_factor=2``); guided operators (FADE, SAPA, IndexNet, A2U, FreqFusion) are guided by
the encoder feature of the resolution they upsample to. ``reduce_i`` is a 1x1 conv from
``w_{i+1}`` to ``w_i`` at the low resolution (identity when the widths agree), so that every
operator, also those that blend guide and input channel by channel (FADE's gate), sees equal
widths.

Why no skip connection: a decoder that adds or concatenates ``e_i`` hands every upsampler the
encoder's detail, and the comparison would no longer show what the study is about, namely whether
an operator can bring encoder detail into the upsampled feature (FADE's gate and encoder-side
kernels, SAPA's guided similarity) or must rebuild it from the decoder feature alone (bilinear,
CARAFE, DySample). The bottleneck makes that gap visible in the reconstruction task: everything
an unguided decoder outputs has to pass through ``bottleneck_channels`` channels at the coarsest
level.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

from mmengine.model import BaseModule
from torch import Tensor, nn

from ..checks import check_positive_int
from ..upsamplers.base import Upsampler
from ..upsamplers.host_config import build_head_upsampler


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1) -> nn.Sequential:
    """Conv (no bias), BatchNorm, ReLU: (B, in, H, W) -> (B, out, H / stride, W / stride)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _check_widths(owner: str, widths: Sequence[int]) -> List[int]:
    if not isinstance(widths, (list, tuple)) or len(widths) < 2:
        raise ValueError(f'{owner}: widths must list the channels of >= 2 levels, finest first '
                         f'(e.g. [32, 32, 32, 32]), got {widths!r}')
    return [check_positive_int(f'{owner}: widths', width) for width in widths]


class ToyEncoder(BaseModule):
    """Plain conv encoder: a full-resolution stem, then stride-2 stages (two 3x3 convs each).

    Args:
        in_channels: image channels (3 for RGB, 1 for grey).
        widths: channels of each level, finest first; level i is at stride 2^i.

    Shapes: (B, in_channels, H, W), H and W divisible by 2^(L-1) ->
    L features (B, widths[i], H / 2^i, W / 2^i), finest first.

    Example:
        >>> encoder = ToyEncoder(3, widths=[8, 16, 16])
        >>> [tuple(f.shape) for f in encoder(torch.randn(2, 3, 32, 32))]
        [(2, 8, 32, 32), (2, 16, 16, 16), (2, 16, 8, 8)]
    """

    def __init__(self, in_channels: int, widths: Sequence[int], init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.widths = _check_widths(type(self).__name__, widths)
        in_channels = check_positive_int('in_channels', in_channels)
        self.stages = nn.ModuleList([conv_bn_relu(in_channels, self.widths[0])])
        for coarser, finer in zip(self.widths[1:], self.widths[:-1]):
            self.stages.append(nn.Sequential(conv_bn_relu(finer, coarser, stride=2),
                                             conv_bn_relu(coarser, coarser)))

    def forward(self, image: Tensor) -> List[Tensor]:
        """(B, C, H, W) -> L features, finest first (class docstring)."""
        stride = 2 ** (len(self.widths) - 1)
        if image.shape[-2] % stride or image.shape[-1] % stride:
            raise ValueError(f'{type(self).__name__}: image size {tuple(image.shape[-2:])} must be '
                             f'divisible by {stride} (2^(levels - 1) for widths={self.widths}); '
                             f'crop or pad the input')
        features = []
        x = image
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class ToyDecoder(nn.Module):
    """x2 steps from the coarsest encoder feature to full resolution, each with any upsampler
    (module docstring: no skips, guided operators guided by the encoder feature ``e_i``).

    Args:
        widths: the encoder's widths, finest first.
        upsample_cfg: the upsampler of every step, e.g. ``dict(type='FADE')``.
        bottleneck_channels: width of the 1x1 bottleneck at the coarsest level (``None``: none).
        owner: the name that error messages give for the module that holds the decoder.

    Shapes: L features (B, widths[i], H / 2^i, W / 2^i) -> (B, widths[0], H, W).
    """

    def __init__(self, widths: Sequence[int], upsample_cfg: Mapping,
                 bottleneck_channels: Optional[int] = None, owner: Optional[str] = None) -> None:
        super().__init__()
        owner = owner or type(self).__name__
        self.widths = _check_widths(owner, widths)
        coarsest = self.widths[-1]
        if bottleneck_channels is None:
            self.bottleneck = nn.Identity()
        else:
            narrow = check_positive_int(f'{owner}: bottleneck_channels', bottleneck_channels)
            self.bottleneck = nn.Sequential(conv_bn_relu(coarsest, narrow, 1),
                                            conv_bn_relu(narrow, coarsest, 1))
        self.reduce = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        self.convs = nn.ModuleList()
        for finer, coarser in zip(self.widths[:-1], self.widths[1:]):
            self.reduce.append(nn.Identity() if finer == coarser else
                               conv_bn_relu(coarser, finer, 1))
            self.upsamplers.append(build_head_upsampler(
                upsample_cfg, 'upsample_cfg', owner, in_channels=finer, guide_channels=finer))
            self.convs.append(conv_bn_relu(finer, finer))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """L encoder features, finest first -> (B, widths[0], H, W)."""
        x = self.bottleneck(features[-1])
        for i in range(len(self.widths) - 2, -1, -1):  # coarsest step first
            x = self.convs[i](self.upsamplers[i].upsample_like(self.reduce[i](x), features[i]))
        return x


def upsampler_parameters(model: nn.Module) -> int:
    """Parameters held by the model's upsamplers (what an operator adds over interpolation),
    each counted once also where one upsampler holds another."""
    owned = {id(parameter): parameter for module in model.modules()
             if isinstance(module, Upsampler) for parameter in module.parameters()}
    return sum(parameter.numel() for parameter in owned.values())
