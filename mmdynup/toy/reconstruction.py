"""The detail-sensitive toy task: reconstruct grey photo patches through a narrow bottleneck.

FADE's study reconstructs Fashion-MNIST; nothing is downloaded here, so the patches come from the
photographs that matplotlib ships in ``mpl-data/sample_data`` (installed with mmdynup):
``grace_hopper.jpg`` (downscaled x2 to 300 x 256) and the MRI slice ``s1045.ima.gz`` (256 x 256),
both as grey images in ``[0, 1]``. The lowest ``held_out`` fraction of the rows of each image is
kept for validation (a grid of non-overlapping patches, without the flat ones: the MRI's black
background would score an infinite PSNR); training patches are random crops of the
rows above, with random horizontal flips, drawn once from ``seed``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from mmengine.model import BaseModel
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..checks import check_positive_int
from .network import ToyDecoder, ToyEncoder

#: matplotlib sample files used, with the factor each is downscaled by.
SAMPLE_PHOTOS: Tuple[Tuple[str, int], ...] = (('grace_hopper.jpg', 2), ('s1045.ima.gz', 1))


def load_sample_photo(name: str, downscale: int = 1) -> np.ndarray:
    """One of matplotlib's sample images as a grey float32 (H, W) array in ``[0, 1]``."""
    if name.endswith('.ima.gz'):  # raw 256 x 256 little-endian uint16 (matplotlib's MRI demo)
        with cbook.get_sample_data(name) as file:
            raw = np.frombuffer(file.read(), '<u2')
        side = int(round(raw.size ** 0.5))
        image = raw.reshape(side, side).astype(np.float32) / raw.max()
    else:
        path = cbook.get_sample_data(name, asfileobj=False)
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    if downscale > 1:
        height, width = image.shape
        image = cv2.resize(image, (width // downscale, height // downscale),
                           interpolation=cv2.INTER_AREA)
    return image


class PhotoPatches(Dataset):
    """Grey patches of matplotlib's sample photographs (module docstring).

    Args:
        split: ``'train'`` (``num_patches`` random crops and flips) or ``'val'`` (the grid of the
            held-out rows).
        patch_size: side P of the square patches.
        num_patches: training patches drawn (ignored for ``'val'``).
        held_out: fraction of each image's rows, from the bottom, kept for validation.
        seed: seed of the training crops.
        min_std: validation patches whose grey values vary less (standard deviation) are left out.

    Items: ``dict(inputs=Tensor (1, P, P))`` in ``[0, 1]``.
    """

    def __init__(self, split: str = 'train', patch_size: int = 32, num_patches: int = 4096,
                 held_out: float = 0.25, seed: int = 0, min_std: float = 0.02,
                 photos: Sequence[Tuple[str, int]] = SAMPLE_PHOTOS) -> None:
        if split not in ('train', 'val'):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if not 0 < held_out < 1:
            raise ValueError(f'held_out must be a fraction in (0, 1), got {held_out!r}')
        self.patch_size = size = check_positive_int('patch_size', patch_size)
        self.photos = tuple(photos)
        images = [load_sample_photo(name, downscale) for name, downscale in photos]
        patches: List[np.ndarray] = []
        rng = np.random.default_rng(seed)
        for image in images:
            height, width = image.shape
            boundary = int(round(height * (1 - held_out)))
            if split == 'val':
                for top in range(boundary, height - size + 1, size):
                    for left in range(0, width - size + 1, size):
                        patch = image[top:top + size, left:left + size]
                        if patch.std() >= min_std:
                            patches.append(patch)
            else:
                if boundary < size:
                    raise ValueError(f'patch_size={size} does not fit in the {boundary} training '
                                     f'rows of a {height} x {width} photo; lower patch_size or '
                                     f'held_out')
                count = check_positive_int('num_patches', num_patches) // len(images)
                tops = rng.integers(0, boundary - size + 1, count)
                lefts = rng.integers(0, width - size + 1, count)
                flips = rng.random(count) < 0.5
                for top, left, flip in zip(tops, lefts, flips):
                    patch = image[top:top + size, left:left + size]
                    patches.append(patch[:, ::-1] if flip else patch)
        if not patches:
            raise ValueError(f'no {split} patch of {size} x {size} fits in the held-out rows '
                             f'(held_out={held_out}); lower patch_size or raise held_out')
        self.patches = torch.from_numpy(np.ascontiguousarray(np.stack(patches)))[:, None]

    @property
    def metainfo(self) -> dict:
        """What mmengine hands to the visualizer and the metrics (as a BaseDataset's)."""
        return dict(photos=[name for name, _ in self.photos], patch_size=self.patch_size)

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.patches[index])


class ToyReconstructor(BaseModel):
    """Encoder-decoder that reconstructs its input through a narrow bottleneck, with any
    upsampler in the decoder (:mod:`mmdynup.toy.network`), trained with an L1 loss.

    Args:
        in_channels: image channels.
        widths: encoder / decoder widths, finest first.
        upsample_cfg: the decoder's upsampler, e.g. ``dict(type='FADE')``.
        bottleneck_channels: width of the coarsest level's 1x1 bottleneck.

    ``forward(inputs (B, C, H, W), mode)``: ``'tensor'`` -> reconstruction (B, C, H, W);
    ``'loss'`` -> ``dict(loss=L1)``; ``'predict'`` -> B dicts with ``prediction`` and
    ``target`` (C, H, W), what :class:`~mmdynup.toy.metrics.ReconstructionMetric` reads.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 32, 32, 32),
                 upsample_cfg: Optional[dict] = None, bottleneck_channels: Optional[int] = 4,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.encoder = ToyEncoder(in_channels, widths)
        self.decoder = ToyDecoder(widths, upsample_cfg or dict(type='BilinearUpsample'),
                                  bottleneck_channels, owner=type(self).__name__)
        self.output = nn.Conv2d(self.encoder.widths[0], in_channels, 1)

    def forward(self, inputs: Tensor, data_samples=None, mode: str = 'tensor'):
        reconstruction = self.output(self.decoder(self.encoder(inputs)))
        if mode == 'loss':
            return dict(loss=F.l1_loss(reconstruction, inputs))
        if mode == 'predict':
            return [dict(prediction=output, target=target)
                    for output, target in zip(reconstruction.detach(), inputs)]
        if mode == 'tensor':
            return reconstruction
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
