"""ImageNet classification transforms on numpy / cv2 / torch (no torchvision, no PIL).

The fine-tuning and pretraining recipes of MIRL (Huang et al., NeurIPS 2023; authors' code
``russellllaputa/MIRL``, ``main_finetune.py`` / ``main_pretrain.py``, transforms from their
``data/preprocess/basic_transforms.py``) need: RandomResizedCrop with bicubic resampling,
horizontal flip, RandAugment (:mod:`.rand_augment`), a shorter-side resize to 256 and a centre
crop to 224 at test time. Each transform here is an mmengine pipeline step: a callable on the
``results`` dict, registered in :data:`TRANSFORMS` (scope ``mmdynup``: configs write
``type='mmdynup.RandomResizedCrop'``; mmcv's and mmseg's transforms of the same names stay
untouched). Images are RGB uint8 arrays (H, W, 3).

Resizing is torch's bicubic with ``antialias=True``, the filter that PIL's ``Image.resize``
applies (the authors resize with PIL), so a downscaled image is low-pass filtered as theirs is.
Randomness is Python's ``random`` (crops, flips) as in the authors' code; mmengine seeds it in
every data-loader worker.
"""
from __future__ import annotations

import math
import random
from typing import Dict, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import TRANSFORMS as ENGINE_TRANSFORMS
from mmengine.registry import Registry
from mmengine.structures import BaseDataElement

from ..checks import check_positive_int

TRANSFORMS = Registry('transform', parent=ENGINE_TRANSFORMS, scope='mmdynup')


def _size_pair(name: str, size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f'{name} must be a positive int or an (height, width) pair, got {size!r}')
    return int(size[0]), int(size[1])


def resize_bicubic(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) uint8, bicubic with PIL's antialiasing filter."""
    if image.shape[:2] == tuple(size):
        return image.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, size=size, mode='bicubic', align_corners=False,
                            antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def random_resized_crop_box(height: int, width: int, scale: Tuple[float, float],
                            ratio: Tuple[float, float]) -> Tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` (the authors' port): (top, left, h, w).

    Ten tries of an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``;
    otherwise a centre crop clamped to the ratio range.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * random.uniform(scale[0], scale[1])
        aspect = math.exp(random.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            # torchvision draws the corner with an exclusive upper bound; the authors' port
            # uses random.randint's inclusive one, which can start one row past the fit.
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@TRANSFORMS.register_module()
class LoadRGBImage:
    """Read ``results['img_path']`` into ``results['img']``: (H, W, 3) uint8 RGB."""

    def __call__(self, results: Dict) -> Dict:
        path = results['img_path']
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f'img_path {path!r} is not a readable image file')
        results['img'] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        results['ori_shape'] = image.shape[:2]
        return results


@TRANSFORMS.register_module()
class RandomResizedCrop:
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio``, resize to ``size``
    bicubically (``main_finetune.py``: scale (0.08, 1); ``main_pretrain.py``: (0.2, 1))."""

    def __init__(self, size: Union[int, Sequence[int]] = 224,
                 scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3)):
        self.size = _size_pair('size', size)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f'scale must be (min, max) with 0 < min <= max <= 1, got {scale}')
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f'ratio must be (min, max) with 0 < min <= max, got {ratio}')
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __call__(self, results: Dict) -> Dict:
        image = results['img']
        top, left, h, w = random_resized_crop_box(*image.shape[:2], self.scale, self.ratio)
        results['img'] = resize_bicubic(image[top:top + h, left:left + w], self.size)
        return results


@TRANSFORMS.register_module()
class RandomHorizontalFlip:
    """Mirror left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    def __call__(self, results: Dict) -> Dict:
        if random.random() < self.prob:
            results['img'] = np.ascontiguousarray(results['img'][:, ::-1])
        return results


@TRANSFORMS.register_module()
class ResizeShorterSide:
    """Resize so that the shorter side is ``size`` (the longer one ``int(size * long / short)``,
    as torchvision's ``Resize(int)``), bicubic with antialiasing."""

    def __init__(self, size: int = 256):
        self.size = check_positive_int('size', size)

    def __call__(self, results: Dict) -> Dict:
        image = results['img']
        height, width = image.shape[:2]
        if height <= width:
            shape = (self.size, int(self.size * width / height))
        else:
            shape = (int(self.size * height / width), self.size)
        results['img'] = resize_bicubic(image, shape)
        return results


@TRANSFORMS.register_module()
class CenterCrop:
    """The central ``size`` crop (torchvision's rounding of the corner); a smaller image is
    refused (the recipes resize to 256 first)."""

    def __init__(self, size: Union[int, Sequence[int]] = 224):
        self.size = _size_pair('size', size)

    def __call__(self, results: Dict) -> Dict:
        image = results['img']
        height, width = image.shape[:2]
        crop_h, crop_w = self.size
        if crop_h > height or crop_w > width:
            raise ValueError(f'CenterCrop size {self.size} is larger than the image '
                             f'({height}, {width}); resize first (ResizeShorterSide)')
        top, left = int(round((height - crop_h) / 2)), int(round((width - crop_w) / 2))
        results['img'] = np.ascontiguousarray(image[top:top + crop_h, left:left + crop_w])
        return results


@TRANSFORMS.register_module()
class PackClassificationInputs:
    """``img`` (H, W, 3) uint8 -> ``inputs`` (3, H, W) uint8 tensor; ``data_samples`` a
    ``BaseDataElement`` with ``gt_label`` (0-d int64) when the item has one, and its meta
    (``img_path``, ``ori_shape``, ``img_shape``)."""

    def __call__(self, results: Dict) -> Dict:
        image = results['img']
        sample = BaseDataElement(metainfo=dict(
            img_path=results.get('img_path'), ori_shape=results.get('ori_shape'),
            img_shape=image.shape[:2]))
        if 'gt_label' in results:
            sample.gt_label = torch.tensor(int(results['gt_label']), dtype=torch.long)
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return dict(inputs=inputs, data_samples=sample)
