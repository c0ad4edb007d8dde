"""IndexNet: learned index functions for upsampling (Lu et al., "Indices Matter: Learning to
Index for Deep Image Matting", ICCV 2019; TPAMI 2020 "Index Networks").

An index block looks at a high-resolution *encoder* feature ``guide`` (B, C_g, H, W) and predicts,
for every 2 x 2 block, four logits (one per sub-pixel), either one set for all channels
(holistic) or one per channel (depthwise). With ``y = sigmoid(logits)``:

    idx_en = pixel_shuffle(softmax over the 4 sub-pixels of y)    (the encoder's pooling index)
    idx_de = pixel_shuffle(y)                                     (the decoder's upsampling index)

Sub-pixel ``j`` (holistic channel j, depthwise branch ``indexnet{j+1}``) is position
``(j // 2, j % 2)`` of its 2 x 2 block. The encoder pools with ``4 * avg_pool_2x2(idx_en * e)``;
the decoder upsamples a coarse feature ``x`` with

    up(x) = idx_de * nearest_up_2(x)

which is what :class:`IndexNet` computes (the "index-guided" upsampling that the FADE and
SAPA tables compare against), guided by the finer encoder feature.

Index blocks (authors' ``scripts/hlindex.py``, poppinace/indexnet_matting), every conv without
bias, the first one of stride 2: kernel 2 (no padding), or kernel 4 with padding 1 when
``use_context`` (the block then sees a 4 x 4 window around each 2 x 2 block):

* ``'holistic'`` (``HolisticIndexBlock``): C_g -> 4; nonlinear: conv C_g -> 2 C_g, BatchNorm,
  ReLU6, 1x1 conv 2 C_g -> 4. Index maps have one channel.
* ``'o2o'`` (``DepthwiseO2OIndexBlock``): four branches ``indexnet1..4`` of depthwise convs
  (``groups=C_g``; nonlinear: conv, BatchNorm, ReLU6, depthwise 1x1). Index maps have C_g
  channels: one-to-one, channel c of the index comes from channel c of the guide.
* ``'m2o'`` (``DepthwiseM2OIndexBlock``): the same four branches with full C_g -> C_g convs
  (many-to-one).

Parameter names are the authors' (``index_block.indexnet...``), so their checkpoints load with a
prefix only.

Sizes. The index block needs even guide sides (the authors' code silently returns
``2 * floor(H / 2)`` rows). The hosts hand odd guides too (mmseg / mmdet stages of a 500 x 375
image: 94 x 125 over 47 x 63): an odd side is padded by one replicated row / column before the
index block and the index maps are cropped back, so (i, j) keeps its parent (i // 2, j // 2) and
even sides compute exactly the authors' numbers. Scale 2 only (the blocks are 2 x 2 by design).

Channels. Holistic index maps have one channel and weight every channel of ``x``, so guide and
input widths are free; depthwise index maps have the guide's C_g channels and weight ``x``
channel by channel, so they need ``guide_channels == in_channels``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_upsampler
from .base import Upsampler, check_positive_int, check_scale_factor
from .fade import nearest_upsample_to

#: The index block kinds: the authors' class for each.
INDEX_BLOCKS = {'holistic': 'HolisticIndexBlock', 'o2o': 'DepthwiseO2OIndexBlock',
                'm2o': 'DepthwiseM2OIndexBlock'}

#: Batch-norm classes by name (configs are plain data; the reference records store the
#: dotted name ``'torch.nn.BatchNorm2d'``).
BATCH_NORMS = {'BatchNorm2d': nn.BatchNorm2d, 'torch.nn.BatchNorm2d': nn.BatchNorm2d,
               'SyncBatchNorm': nn.SyncBatchNorm, 'torch.nn.SyncBatchNorm': nn.SyncBatchNorm}

NormLayer = Union[str, Callable[[int], nn.Module], None]


def resolve_batch_norm(batch_norm: NormLayer, needed: bool) -> Optional[Callable[[int], nn.Module]]:
    """The normalisation layer class of a nonlinear index block (``None`` when not ``needed``)."""
    if not needed:
        return None
    if isinstance(batch_norm, str):
        if batch_norm not in BATCH_NORMS:
            raise ValueError(f'batch_norm={batch_norm!r} is not a known batch-norm layer; use one '
                             f'of {sorted(BATCH_NORMS)} or pass the class itself')
        return BATCH_NORMS[batch_norm]
    if batch_norm is None:
        raise ValueError('batch_norm=None, but a nonlinear index block (use_nonlinear=True) '
                         'normalises its hidden layer; pass batch_norm="BatchNorm2d" (the '
                         'authors\' choice) or a batch-norm class')
    if not callable(batch_norm):
        raise TypeError(f'batch_norm must be a layer name such as "BatchNorm2d" or a class, got '
                        f'{batch_norm!r} ({type(batch_norm).__name__})')
    return batch_norm


def index_branch(in_channels: int, out_channels: int, hidden_channels: int, groups: int,
                 use_nonlinear: bool, use_context: bool,
                 batch_norm: Optional[Callable[[int], nn.Module]]) -> nn.Sequential:
    """One branch of an index block: stride-2 conv (kernel 2, or 4 with padding 1 for context),
    and for the nonlinear variant BatchNorm + ReLU6 + 1x1 conv; no biases. Layer indices are the
    authors' (``0`` conv, ``1`` norm, ``3`` conv)."""
    kernel_size, padding = (4, 1) if use_context else (2, 0)
    first = nn.Conv2d(in_channels, hidden_channels if use_nonlinear else out_channels,
                      kernel_size, stride=2, padding=padding, groups=groups, bias=False)
    if not use_nonlinear:
        return nn.Sequential(first)
    return nn.Sequential(first, batch_norm(hidden_channels), nn.ReLU6(),
                         nn.Conv2d(hidden_channels, out_channels, 1, groups=groups, bias=False))


class IndexBlock(nn.Module):
    """An IndexNet index block: guide (B, C, H, W) -> ``(idx_en, idx_de)``, each (B, 1, H, W)
    (holistic) or (B, C, H, W) (depthwise); H and W even. See the module docstring.

    Args:
        in_channels: C of the guide (the authors' ``inp``).
        kind: ``'holistic'``, ``'o2o'`` (depthwise one-to-one) or ``'m2o'`` (depthwise
            many-to-one).
        use_nonlinear: conv + BatchNorm + ReLU6 + 1x1 conv instead of one conv.
        use_context: 4 x 4 windows (padding 1) instead of 2 x 2.
        batch_norm: the normalisation layer of the nonlinear variant (name or class).
    """

    def __init__(self, in_channels: int, kind: str = 'm2o', use_nonlinear: bool = False,
                 use_context: bool = False, batch_norm: NormLayer = 'BatchNorm2d') -> None:
        super().__init__()
        if kind not in INDEX_BLOCKS:
            raise ValueError(f'index_block={kind!r} is not an IndexNet index block; use one of '
                             f'{sorted(INDEX_BLOCKS)} ({INDEX_BLOCKS})')
        for name, value in (('use_nonlinear', use_nonlinear), ('use_context', use_context)):
            if not isinstance(value, bool):
                raise TypeError(f'{name} must be True or False, got {value!r} '
                                f'({type(value).__name__})')
        self.in_channels = check_positive_int('in_channels', in_channels)
        self.kind, self.use_nonlinear, self.use_context = kind, use_nonlinear, use_context
        norm = resolve_batch_norm(batch_norm, use_nonlinear)
        channels = self.in_channels
        if kind == 'holistic':
            if use_nonlinear:
                self.indexnet = index_branch(channels, 4, 2 * channels, 1, True, use_context, norm)
            else:  # the authors' linear holistic block is a bare conv (key ``indexnet.weight``)
                self.indexnet = index_branch(channels, 4, 4, 1, False, use_context, None)[0]
        else:
            groups = channels if kind == 'o2o' else 1
            for position in range(1, 5):
                self.add_module(f'indexnet{position}', index_branch(
                    channels, channels, channels, groups, use_nonlinear, use_context, norm))
        self.reset_parameters()

    @property
    def index_channels(self) -> int:
        """Channels of the index maps: 1 (holistic) or C (depthwise)."""
        return 1 if self.kind == 'holistic' else self.in_channels

    def reset_parameters(self) -> None:
        """The IndexNet matting network's init: convs normal(0, sqrt(2 / (k * k * out))), batch
        norms weight 1 and bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        return (f'{INDEX_BLOCKS[self.kind]}, in_channels={self.in_channels}, '
                f'use_nonlinear={self.use_nonlinear}, use_context={self.use_context}')

    def logits(self, guide: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C_idx, 4, H/2, W/2): the four sub-pixel logits of every block."""
        if self.kind == 'holistic':
            return self.indexnet(guide).unsqueeze(1)
        return torch.stack([getattr(self, f'indexnet{position}')(guide)
                            for position in range(1, 5)], dim=2)

    def forward(self, guide: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, C, H, W) -> ``(idx_en, idx_de)`` (B, C_idx, H, W), H and W even."""
        index = torch.sigmoid(self.logits(guide))
        encoder_index = index.softmax(dim=2)  # a softmax of the sigmoid, as the authors' code
        return (F.pixel_shuffle(encoder_index.flatten(1, 2), 2),
                F.pixel_shuffle(index.flatten(1, 2), 2))


def pad_to_even(tensor: Tensor) -> Tensor:
    """Pad odd spatial sides of (B, C, H, W) by one replicated row / column (bottom, right)."""
    height, width = tensor.shape[-2:]
    if height % 2 == 0 and width % 2 == 0:
        return tensor
    return F.pad(tensor, (0, width % 2, 0, height % 2), mode='replicate')


@register_upsampler
class IndexNet(Upsampler):
    """Index-guided upsampling (Lu et al., ICCV 2019): ``idx_de(guide) * nearest_up_2(x)``.

    Args:
        in_channels: C of the coarse feature ``x``.
        scale_factor: must be 2 (index blocks work on 2 x 2 blocks).
        guide_channels: C_g of the high-resolution guide (defaults to ``in_channels``; depthwise
            blocks need ``guide_channels == in_channels``).
        index_block: ``'m2o'`` (default; the IndexNet of the FADE / SAPA SegFormer runs),
            ``'o2o'`` or ``'holistic'``.
        use_nonlinear: nonlinear index block (conv, BatchNorm, ReLU6, 1x1 conv).
        use_context: 4 x 4 context windows.
        batch_norm: normalisation layer of the nonlinear block: ``'BatchNorm2d'``,
            ``'SyncBatchNorm'`` or a class.

    Shapes:
        x (B, C, H, W), guide (B, C_g, oH, oW) -> (B, C, oH, oW), oH <= 2H, oW <= 2W; odd guide
        sides: see the module docstring.

    Example:
        >>> import torch
        >>> up = IndexNet(16, index_block='holistic', use_nonlinear=True)
        >>> up(torch.randn(2, 16, 5, 6), torch.randn(2, 16, 10, 11)).shape
        torch.Size([2, 16, 10, 11])
    """

    requires_guide = True

    def __init__(self, in_channels: int, scale_factor: int = 2,
                 guide_channels: Optional[int] = None, index_block: str = 'm2o',
                 use_nonlinear: bool = False, use_context: bool = False,
                 batch_norm: NormLayer = 'BatchNorm2d') -> None:
        if check_scale_factor(scale_factor) != 2:
            raise ValueError(f'IndexNet predicts an index per sub-pixel of 2 x 2 blocks, '
                             f'so scale_factor must be 2, got {scale_factor!r}; chain two '
                             f'upsamplers for x4')
        super().__init__(in_channels, scale_factor, guide_channels)
        self.index_block = IndexBlock(self.guide_channels, index_block, use_nonlinear,
                                      use_context, batch_norm)
        if self.index_block.index_channels not in (1, self.in_channels):
            raise ValueError(
                f'the depthwise index block {index_block!r} predicts one index map per guide '
                f'channel, so guide_channels must equal in_channels; got guide_channels='
                f'{self.guide_channels}, in_channels={self.in_channels}; use '
                f'index_block="holistic" or equal widths')

    def upsample(self, x: Tensor, guide: Optional[Tensor], size: Tuple[int, int]) -> Tensor:
        decoder_index = self.decoder_index(guide)
        return decoder_index * nearest_upsample_to(x, self.scale_factor, size)

    def decoder_index(self, guide: Tensor) -> Tensor:
        """``idx_de`` of a guide of any size (B, C_g, oH, oW) -> (B, C_idx, oH, oW)."""
        _, decoder_index = self.index_block(pad_to_even(guide))
        return decoder_index[..., :guide.shape[-2], :guide.shape[-1]]
