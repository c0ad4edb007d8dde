"""Synthetic images for smoke-testing MIRL pretraining through mmengine's Runner on a CPU.

Each image is a deterministic sum of a few random low-frequency colour gratings (so masked
patches are predictable from visible ones and the loss can fall within a few dozen steps).
"""
from __future__ import annotations

import math

import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ..checks import check_positive_int


@DATASETS.register_module(force=True)
class MIRLSyntheticImages(Dataset):
    """``num_images`` uint8 images (3, img_size, img_size), item ``i`` fixed by ``seed + i``.

    Items are ``dict(inputs=image)``, the layout mmengine's ``ImgDataPreprocessor`` expects.
    """

    def __init__(self, num_images: int = 8, img_size: int = 32, num_gratings: int = 3,
                 seed: int = 0):
        self.num_images = check_positive_int('num_images', num_images)
        self.img_size = check_positive_int('img_size', img_size)
        self.num_gratings = check_positive_int('num_gratings', num_gratings)
        self.seed = int(seed)

    @property
    def metainfo(self) -> dict:
        """Dataset meta information (mmengine's visualizer reads it)."""
        return dict(name='MIRLSyntheticImages', img_size=self.img_size)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_images:
            raise IndexError(f'index must be in [0, {self.num_images}), got {index}')
        generator = torch.Generator().manual_seed(self.seed + index)
        coords = torch.arange(self.img_size, dtype=torch.float32) / self.img_size
        rows, columns = torch.meshgrid(coords, coords, indexing='ij')
        image = torch.zeros(3, self.img_size, self.img_size)
        for _ in range(self.num_gratings):
            frequency = torch.randint(1, 4, (2,), generator=generator).float()
            phase = torch.rand(1, generator=generator).item() * 2 * math.pi
            colour = torch.rand(3, 1, 1, generator=generator) * 2 - 1
            image += colour * torch.sin(2 * math.pi * (frequency[0] * rows + frequency[1] * columns)
                                        + phase)
        image = (image / self.num_gratings + 1) * 127.5
        return dict(inputs=image.round().clamp(0, 255).to(torch.uint8))
