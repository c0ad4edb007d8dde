"""Scale-invariant log loss in the form of the depth papers' code (BTS and the depth toolbox), as
an option beside mmseg's ``SiLogLoss``.

Eigen et al. (NeurIPS 2014) define, for ``d = log(pred) - log(gt)`` over the valid pixels,

    L = sqrt(mean(d ** 2) - lambda * mean(d) ** 2).

The two implementations differ in three ways:

=====================  ==================================  ===================================
                       mmseg 1.2.2 ``SiLogLoss``           BTS (Lee et al., 2019; cleinc/bts)
=====================  ==================================  ===================================
lambda                 0.5                                 0.85 (``variance_focus``)
pixels of one mean     one image (then mean over images)   all valid pixels of the batch
scale                  1                                   x 10
valid pixels           ``gt > eps`` (1e-6)                 ``gt > 0.1`` m on NYU (1.0 on KITTI)
=====================  ==================================  ===================================

The Monocular-Depth-Estimation-Toolbox (zhyever; the code of DepthFormer, behind DySample's depth
runs) writes the BTS form as ``sqrt(var(d) + 0.15 mean(d) ** 2)`` over the batch, ``gt > 0``, with
``loss_weight`` 10 in its default head (1.0 in its BTS config): the same loss up to ``var``'s
unbiased n / (n - 1).

:class:`ScaleInvariantLogLoss` computes either form: its defaults are BTS's; ``variance_focus=0.5,
scale=1, per_image=True, min_depth=0`` gives mmseg's loss (a test holds the two equal).
"""
from __future__ import annotations

from typing import Optional

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn


def scale_invariant_log_loss(pred: Tensor, target: Tensor, variance_focus: float = 0.85,
                             min_depth: float = 0.1, per_image: bool = False,
                             eps: float = 1e-6) -> Tensor:
    """SiLog loss of ``pred`` against ``target``, both (B, 1, H, W) in metres.

    Pixels with ``target <= min_depth`` (and non-finite targets) are left out. ``per_image=False``
    pools all valid pixels of the batch (BTS); ``True`` computes one loss per image and averages
    the images that have valid pixels (mmseg). Predictions are clamped to ``eps`` before the log.
    Returns a scalar; 0 (with a gradient path) when no pixel is valid.
    """
    if pred.shape != target.shape:
        raise ValueError(f'pred has shape {tuple(pred.shape)} but target has '
                         f'{tuple(target.shape)}; resize the prediction to the ground truth first')
    valid = (target > min_depth) & torch.isfinite(target)
    # Invalid pixels get log(1) - log(1) = 0 and weight 0, so no NaN reaches the gradient.
    safe_target = torch.where(valid, target, torch.ones_like(target))
    safe_pred = torch.where(valid, pred.clamp(min=eps), torch.ones_like(pred))
    difference = torch.log(safe_pred) - torch.log(safe_target)
    weight = valid.to(pred.dtype)
    dims = tuple(range(1, pred.dim())) if per_image else tuple(range(pred.dim()))
    count = weight.sum(dim=dims)
    mean = difference.sum(dim=dims) / count.clamp(min=1)
    mean_square = difference.pow(2).sum(dim=dims) / count.clamp(min=1)
    # mean(d^2) - lambda mean(d)^2 >= (1 - lambda) mean(d)^2 >= 0 for lambda <= 1; the clamp only
    # guards rounding, and the small floor keeps sqrt's gradient finite at a perfect fit.
    loss = torch.sqrt((mean_square - variance_focus * mean.pow(2)).clamp(min=eps))
    has_pixels = count > 0
    if per_image:
        return (loss * has_pixels).sum() / has_pixels.sum().clamp(min=1)
    return loss * has_pixels


@MODELS.register_module()
class ScaleInvariantLogLoss(nn.Module):
    """SiLog loss with the depth papers' settings by default (BTS: lambda 0.85, pooled over the
    batch, x 10, ground truth above 0.1 m); see the module docstring for mmseg's form.

    Args:
        variance_focus: lambda, in [0, 1].
        scale: factor on the square root (BTS: 10).
        min_depth: ground-truth depths at or below it are not supervised (padding, holes).
        per_image: one loss per image averaged over the batch (mmseg) instead of one loss over
            all valid pixels of the batch (BTS).
        loss_weight: extra weight, as mmseg losses have.
        loss_name: key in the loss dict (starts with ``loss_`` to be optimised).

    Shapes: ``pred`` and ``target`` (B, 1, H, W) -> scalar.
    """

    def __init__(self, variance_focus: float = 0.85, scale: float = 10.0,
                 min_depth: float = 0.1, per_image: bool = False, loss_weight: float = 1.0,
                 loss_name: str = 'loss_silog') -> None:
        super().__init__()
        if not 0.0 <= float(variance_focus) <= 1.0:
            raise ValueError(f'variance_focus must be in [0, 1] (lambda of the SiLog loss; BTS '
                             f'uses 0.85, mmseg 0.5), got {variance_focus!r}')
        if float(min_depth) < 0:
            raise ValueError(f'min_depth must be >= 0 metres, got {min_depth!r}')
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_" so that mmengine optimises it, '
                             f'got {loss_name!r}')
        self.variance_focus = float(variance_focus)
        self.scale = float(scale)
        self.min_depth = float(min_depth)
        self.per_image = bool(per_image)
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def extra_repr(self) -> str:
        return (f'variance_focus={self.variance_focus}, scale={self.scale}, '
                f'min_depth={self.min_depth}, per_image={self.per_image}')

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        if weight is not None:
            raise ValueError('ScaleInvariantLogLoss takes no per-pixel weight (the valid pixels '
                             'are those with target > min_depth); got a weight tensor')
        loss = scale_invariant_log_loss(pred, target, self.variance_focus, self.min_depth,
                                        self.per_image)
        return self.loss_weight * self.scale * loss
