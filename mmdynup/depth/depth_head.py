"""What turns an mmseg segmentation decode head into a depth head for mmseg's ``DepthEstimator``.

mmseg 1.2.2's ``BaseDecodeHead`` is written for class logits: ``_stack_batch_gt`` reads
``gt_sem_seg``, ``loss_by_feat`` passes ``ignore_index`` and adds ``acc_seg``. A depth head needs

* one output channel and a positive output activation (``output_activation``):
  ``'sigmoid'``: ``sigmoid(x) * max_depth`` (BTS, the depth toolbox's ``scale_up``, mmseg's
  ``VPDDepthHead``); ``'relu'``: ``relu(x) + min_depth`` (the depth toolbox's default);
* the ground truth ``gt_depth_map`` (B, 1, H, W, metres) and the prediction resized to it
  (bilinear) before the loss; no ``ignore_index`` (the loss masks invalid depth itself);
* a depth loss (mmseg's ``SiLogLoss`` or :class:`~mmdynup.depth.ScaleInvariantLogLoss`).

:class:`DepthHeadMixin` holds exactly that and goes first in the bases of a decode head; the
head's own ``_forward_feature`` stays untouched. ``predict_by_feat`` is the host's (a bilinear
resize to the padded input size); ``DepthEstimator`` crops the padding and resizes to the
original image size.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import torch
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn

OUTPUT_ACTIVATIONS = ('sigmoid', 'relu')

#: Segmentation arguments a depth head sets itself (one output channel, no label to ignore).
_FIXED_ARGUMENTS = dict(num_classes=1, out_channels=1, ignore_index=None, sampler=None)


class DepthHeadMixin:
    """Depth output, ground truth and loss for an mmseg ``BaseDecodeHead`` subclass.

    Args (keywords, the rest goes to the decode head):
        output_activation: ``'sigmoid'`` (``sigmoid * max_depth``, default) or ``'relu'``
            (``relu + min_depth``).
        min_depth: smallest predicted depth of ``'relu'`` (metres, > 0 so the log loss is
            finite).
        max_depth: largest predicted depth of ``'sigmoid'`` (metres; NYU: 10).
        loss_decode: depth loss config(s); default mmseg's ``SiLogLoss``.

    Shapes: ``forward`` returns depth (B, 1, H_0, W_0) at the head's output stride, > 0.
    """

    def __init__(self, *args, output_activation: str = 'sigmoid', min_depth: float = 1e-3,
                 max_depth: float = 10.0, loss_decode=dict(type='SiLogLoss'), **kwargs) -> None:
        owner = type(self).__name__
        for key, value in _FIXED_ARGUMENTS.items():
            if key in kwargs and kwargs[key] != value:
                raise ValueError(f'{owner}: {key}={kwargs[key]!r} is a segmentation setting; a '
                                 f'depth head predicts one channel and masks invalid depth in '
                                 f'its loss: remove {key} (it is {value!r} here)')
            kwargs.pop(key, None)
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f'{owner}: output_activation={output_activation!r}; use one of '
                             f'{OUTPUT_ACTIVATIONS}')
        if not 0 < float(min_depth) < float(max_depth):
            raise ValueError(f'{owner}: need 0 < min_depth < max_depth (metres), got '
                             f'min_depth={min_depth!r}, max_depth={max_depth!r}')
        # BaseDecodeHead asks a one-channel head for a binary-segmentation threshold and warns
        # without one; depth has none, so it is set here and cleared below. It gets no loss
        # (an empty list: its dict path calls the deprecated, warning build_loss).
        super().__init__(*args, num_classes=1, out_channels=1, threshold=0.0,
                         ignore_index=None, loss_decode=[], **kwargs)
        self.threshold = None
        self.output_activation = output_activation
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.loss_decode = build_depth_losses(loss_decode, owner)

    def activate(self, raw: Tensor) -> Tensor:
        """Raw one-channel output (B, 1, H, W) -> depth in metres, > 0."""
        if self.output_activation == 'sigmoid':
            return torch.sigmoid(raw) * self.max_depth
        return torch.relu(raw) + self.min_depth

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Multi-level features -> depth (B, 1, H_0, W_0) in metres."""
        return self.activate(self.cls_seg(self._forward_feature(inputs)))

    def _stack_batch_gt(self, batch_data_samples: Sequence) -> Tensor:
        """The ``gt_depth_map`` of every sample, (B, 1, H, W) metres."""
        missing = [index for index, sample in enumerate(batch_data_samples)
                   if 'gt_depth_map' not in sample]
        if missing:
            raise KeyError(f'{type(self).__name__}: samples {missing} have no gt_depth_map; load '
                           f'it with LoadDepthAnnotation (a depth head cannot train on '
                           f'gt_sem_seg)')
        return torch.stack([sample.gt_depth_map.data for sample in batch_data_samples], dim=0)

    def loss_by_feat(self, depth: Tensor, batch_data_samples: Sequence) -> Dict[str, Tensor]:
        """Depth (B, 1, h, w) -> losses against ``gt_depth_map`` (B, 1, H, W), after resizing the
        prediction bilinearly to the ground truth."""
        target = self._stack_batch_gt(batch_data_samples).to(depth.dtype)
        depth = resize(depth, size=target.shape[2:], mode='bilinear',
                       align_corners=self.align_corners)
        losses: Dict[str, Tensor] = {}
        for loss in self.loss_decode:
            value = loss(depth, target)
            losses[loss.loss_name] = losses.get(loss.loss_name, 0) + value
        return losses


def build_depth_losses(cfg, owner: str) -> nn.ModuleList:
    """``loss_decode`` (a dict or a list of dicts) -> ModuleList of losses with ``loss_name``."""
    configs = [cfg] if isinstance(cfg, Mapping) else cfg
    if not isinstance(configs, (list, tuple)) or not all(isinstance(c, Mapping)
                                                         for c in configs):
        raise TypeError(f'{owner}: loss_decode must be a dict such as dict(type="SiLogLoss") or a '
                        f'list of them, got {cfg!r}')
    losses = nn.ModuleList(MODELS.build(c) for c in configs)
    for loss in losses:
        if not hasattr(loss, 'loss_name'):
            raise TypeError(f'{owner}: loss_decode builds {type(loss).__name__}, which has no '
                            f'loss_name; use a depth loss such as SiLogLoss or '
                            f'ScaleInvariantLogLoss')
    return losses
