"""Random erasing, label smoothing and mixup / cutmix for classification fine-tuning.

As in MIRL's ``main_finetune.py`` (``russellllaputa/MIRL``; operators from their
``data/preprocess/basic_transforms.py`` and ``batch_transforms.py``):

* random erasing (``--reprob 0.25 --remode pixel``): with probability 0.25 per image, one
  rectangle of area fraction U(0.02, 1/3) and log-uniform aspect ratio in (0.3, 1/0.3) (ten
  tries) is filled with N(0, 1) noise per pixel and channel, on the *normalised* image;
* mixup / cutmix (``--mixup 0.8 --cutmix 1.0``, ``mixup_switch_prob`` 0.5): per batch, mixup with
  probability 0.5 (lambda ~ Beta(0.8, 0.8)) or cutmix otherwise (lambda ~ Beta(1, 1), a box of
  area 1 - lambda, lambda then corrected to the clipped box); image i is mixed with image N-1-i
  (the batch reversed); targets are the label-smoothed (``--smoothing 0.1``) one-hot vectors
  mixed with the same lambda.
"""
from __future__ import annotations

import math
import random
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """(N,) int labels -> (N, K) targets ``(1 - smoothing) * one_hot + smoothing / K`` (Paddle's
    ``F.label_smooth``; timm's ``LabelSmoothingCrossEntropy`` is the same loss)."""
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
        raise ValueError(f'labels must be in [0, num_classes={num_classes}), got '
                         f'[{int(labels.min())}, {int(labels.max())}]')
    one_hot = torch.nn.functional.one_hot(labels.long(), num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def erase_random_box_(image: Tensor, area: Tuple[float, float] = (0.02, 1 / 3),
                      aspect: float = 0.3, attempts: int = 10) -> bool:
    """Fill one random box of (C, H, W) ``image`` with N(0, 1) noise in place; False when no
    box fitted in ``attempts`` tries (the image is then unchanged)."""
    channels, height, width = image.shape
    log_aspect = (math.log(aspect), math.log(1 / aspect))
    for _ in range(attempts):
        target = random.uniform(*area) * height * width
        ratio = math.exp(random.uniform(*log_aspect))
        h, w = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if w < width and h < height:
            top, left = random.randint(0, height - h), random.randint(0, width - w)
            image[:, top:top + h, left:left + w] = torch.randn(
                channels, h, w, dtype=image.dtype, device=image.device)
            return True
    return False


def cutmix_box(height: int, width: int, lam: float) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of side fraction sqrt(1 - lam) around a uniform
    centre, clipped to the image (the authors' ``Cutmix._rand_bbox``)."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    centre_y, centre_x = np.random.randint(height), np.random.randint(width)
    top, bottom = np.clip([centre_y - cut_h // 2, centre_y + cut_h // 2], 0, height)
    left, right = np.clip([centre_x - cut_w // 2, centre_x + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def mix_batch(images: Tensor, targets: Tensor, mixup_alpha: float, cutmix_alpha: float,
              switch_prob: float = 0.5, mode: Optional[str] = None) -> Tuple[Tensor, Tensor, str]:
    """Mixup or cutmix of (N, C, H, W) ``images`` and (N, K) ``targets`` with the reversed batch.

    ``mode`` forces ``'mixup'`` or ``'cutmix'``; by default cutmix is drawn with probability
    ``switch_prob`` when both alphas are positive. Returns (images, targets, mode used).
    """
    if mode is None:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            mode = 'cutmix' if random.random() < switch_prob else 'mixup'
        else:
            mode = 'mixup' if mixup_alpha > 0 else 'cutmix'
    if mode not in ('mixup', 'cutmix'):
        raise ValueError(f"mode must be 'mixup', 'cutmix' or None, got {mode!r}")
    alpha = mixup_alpha if mode == 'mixup' else cutmix_alpha
    if alpha <= 0:
        raise ValueError(f'{mode}_alpha must be > 0 to use {mode}, got {alpha}')
    lam = float(np.random.beta(alpha, alpha))
    flipped = images.flip(0)
    if mode == 'mixup':
        images = images * lam + flipped * (1.0 - lam)
    else:
        height, width = images.shape[-2:]
        top, bottom, left, right = cutmix_box(height, width, lam)
        images = images.clone()
        images[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return images, targets * lam + targets.flip(0) * (1.0 - lam), mode
