"""The A2U / IndexNet matting loss: Charbonnier alpha and composition losses on the unknown region
(dongdong93/a2u_matting ``trainval.py weighted_loss``; Lu et al., ICCV 2019)."""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor


def charbonnier_sum(difference: Tensor, mask: Tensor, epsilon: float) -> Tensor:
    """``sum_{h, w} sqrt((d * m)^2 + eps^2) / (sum_{h, w} m + 1)`` per sample and channel, summed
    over channels and averaged over the batch. The ``eps`` of every pixel outside the mask counts
    too, as in the authors' code."""
    masked = difference * mask
    per_map = torch.sqrt(masked * masked + epsilon ** 2).sum(dim=(2, 3))
    return (per_map / (mask.sum(dim=(2, 3)) + 1)).sum() / difference.shape[0]


def matting_loss(pred_alpha: Tensor, gt_alpha: Tensor, unknown: Tensor, fg: Tensor, bg: Tensor,
                 alpha_weight: float = 0.5, epsilon: float = 1e-6) -> Dict[str, Tensor]:
    """``alpha_weight`` x alpha loss and ``1 - alpha_weight`` x composition loss.

    Args:
        pred_alpha, gt_alpha: (B, 1, H, W); the prediction unclipped, as the authors train it.
        unknown: (B, 1, H, W), 1 on the trimap's unknown pixels, else 0.
        fg, bg: (B, 3, H, W) foreground and background colours in [0, 1].

    Returns:
        ``dict(loss_alpha=..., loss_composition=...)``, the weighted terms. The composition term
        compares ``p fg + (1 - p) bg`` with the ground-truth composite ``g fg + (1 - g) bg``.
    """
    loss_alpha = charbonnier_sum(pred_alpha - gt_alpha, unknown, epsilon)
    composite_error = (pred_alpha - gt_alpha) * (fg - bg)  # (p fg + (1-p) bg) - (g fg + (1-g) bg)
    loss_composition = charbonnier_sum(composite_error, unknown, epsilon)
    return dict(loss_alpha=alpha_weight * loss_alpha,
                loss_composition=(1 - alpha_weight) * loss_composition)
