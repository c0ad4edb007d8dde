"""Batch side of the fine-tuning data path: normalise, random erasing, mixup / cutmix."""
from __future__ import annotations

import random
from typing import Optional, Sequence

import torch
from mmengine.model import ImgDataPreprocessor

from ..registry import MODELS
from .batch_augments import erase_random_box_, mix_batch, smooth_one_hot


@MODELS.register_module()
class ClassificationDataPreprocessor(ImgDataPreprocessor):
    """mmengine's ``ImgDataPreprocessor`` (stack, normalise) plus, in training, the authors'
    per-image random erasing and per-batch mixup / cutmix (:mod:`.batch_augments`).

    Args:
        mean, std: normalisation (RGB, 0-255 scale), e.g. ImageNet's.
        num_classes: K of the one-hot targets.
        label_smoothing: smoothing of the one-hot targets before mixing (0.1).
        erase_prob: probability of erasing one box per image (0.25; 0 disables).
        mixup_alpha, cutmix_alpha: Beta parameters (0.8, 1.0; 0 disables that one).
        switch_prob: probability of cutmix when both are enabled (0.5).
        bgr_to_rgb: flip channels (False: our loader reads RGB).

    In training each data sample gets ``gt_score`` (K,): its soft target. Outside training the
    batch is only stacked and normalised.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], num_classes: int,
                 label_smoothing: float = 0.0, erase_prob: float = 0.0,
                 mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 switch_prob: float = 0.5, bgr_to_rgb: bool = False,
                 non_blocking: Optional[bool] = False):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb, non_blocking=non_blocking)
        for name, value in (('label_smoothing', label_smoothing), ('erase_prob', erase_prob),
                            ('switch_prob', switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f'mixup_alpha and cutmix_alpha must be >= 0 (0 disables), got '
                             f'{mixup_alpha} and {cutmix_alpha}')
        self.num_classes = int(num_classes)
        self.label_smoothing = label_smoothing
        self.erase_prob = erase_prob
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob = switch_prob

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if not training:
            return data
        inputs, samples = data['inputs'], data['data_samples']
        if self.erase_prob > 0:
            for image in inputs:
                if random.random() < self.erase_prob:
                    erase_random_box_(image)
        labels = torch.stack([sample.gt_label for sample in samples]).to(inputs.device)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            inputs, targets, _ = mix_batch(inputs, targets, self.mixup_alpha, self.cutmix_alpha,
                                           self.switch_prob)
        for sample, target in zip(samples, targets):
            sample.gt_score = target
        return dict(inputs=inputs, data_samples=samples)
