"""The region-sensitive toy task: the toy encoder-decoder as an mmseg ``EncoderDecoder``.

The encoder is the backbone and :class:`ToyDecodeHead` the decode head, so mmseg's data pipeline,
loss, inference and ``IoUMetric`` run unchanged on the synthetic scenes of
:mod:`mmdynup.datasets.synthetic_ade`.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from ..seg.decode_losses import DEFAULT_LOSS_DECODE, build_decode_losses
from .network import ToyDecoder


class ToyDecodeHead(BaseDecodeHead):
    """:class:`~mmdynup.toy.network.ToyDecoder` then mmseg's ``conv_seg``: logits at full
    resolution, every x2 step by ``upsample_cfg``'s operator.

    Args:
        in_channels: the encoder's widths, finest first (the decoder's widths too).
        upsample_cfg: the upsampler of every step, e.g. ``dict(type='SAPAB')``.
        bottleneck_channels: width of the coarsest level's 1x1 bottleneck (``None``: none).
        loss_decode: a loss config or a list of them, as mmseg's (default: cross-entropy).
        **kwargs: ``BaseDecodeHead`` arguments (``num_classes``,
            ``dropout_ratio`` (default 0 here), ...); ``channels`` is ``in_channels[0]``; the
            decoder's convs use BatchNorm (``norm_cfg`` applies to none of them).

    Shapes: L features (B, in_channels[i], H / 2^i, W / 2^i) -> (B, num_classes, H, W).
    """

    def __init__(self, in_channels: Sequence[int], upsample_cfg: Mapping,
                 bottleneck_channels: Optional[int] = None,
                 loss_decode=None, **kwargs) -> None:
        kwargs.setdefault('dropout_ratio', 0.0)
        if 'channels' in kwargs:
            raise ValueError(f'{type(self).__name__}: channels is in_channels[0] (the finest '
                             f'level\'s width), got channels={kwargs["channels"]!r}; remove it')
        super().__init__(in_channels=list(in_channels), channels=in_channels[0],
                         input_transform='multiple_select',
                         in_index=list(range(len(in_channels))), loss_decode=[], **kwargs)
        self.loss_decode = build_decode_losses(
            DEFAULT_LOSS_DECODE if loss_decode is None else loss_decode, type(self).__name__)
        self.decoder = ToyDecoder(in_channels, upsample_cfg, bottleneck_channels,
                                  owner=type(self).__name__)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        return self.cls_seg(self.decoder(self._transform_inputs(inputs)))
