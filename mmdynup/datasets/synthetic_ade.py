"""A tiny synthetic segmentation set written in ADE20K's on-disk layout.

Layout (what mmseg's ``ADE20KDataset`` reads)::

    data_root/images/{training,validation}/ADE_*_00000001.jpg
    data_root/annotations/{training,validation}/ADE_*_00000001.png

Annotations follow ADE20K's convention: 0 = "other" (ignored with ``reduce_zero_label=True``),
classes start at 1. The scenes are built so that upsampling quality matters: a decoder predicts
at stride 4 or coarser, while the scenes hold

* ``wire``: straight and curved lines 1-3 px wide, thinner than one stride-4 cell;
* ``disc``: filled discs and polygons with sharp, anti-alias-free boundaries;
* ``lattice``: a fine checker region whose cells are 4-6 px (about one feature cell);
* ``background``: smooth colour gradients with noise.

Colour alone does not identify a class: each class draws its colour from overlapping ranges and
the image gets Gaussian noise, so the network needs shape and context.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np

from .recipe_stamp import already_written, write_stamp

CLASSES: Tuple[str, ...] = ('background', 'wire', 'disc', 'lattice')
PALETTE = ((120, 120, 120), (230, 25, 75), (60, 180, 75), (0, 130, 200))
_SPLITS = {'training': 'train', 'validation': 'val'}
MIN_SIZE = 48


def _random_colour(rng: np.random.Generator, centre: Tuple[int, int, int]) -> Tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-70, 71), 0, 255)) for c in centre)


def render_scene(rng: np.random.Generator, size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """One (image HxWx3 uint8 BGR, label HxW uint8 with values 1..len(CLASSES)) pair."""
    if size < MIN_SIZE:
        raise ValueError(f'size must be >= {MIN_SIZE} pixels (discs and lattices need room), '
                         f'got {size}')
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.array(_random_colour(rng, (128, 128, 128)), np.float32)
    tilt = rng.uniform(-60, 60, size=(2, 3)).astype(np.float32)
    image = base + yy[..., None] * tilt[0] + xx[..., None] * tilt[1]
    label = np.full((size, size), 1, np.uint8)

    # Lattice patch: fine checkerboard (cells about one stride-4 feature cell).
    for _ in range(rng.integers(0, 2) + 1):
        cell = int(rng.integers(4, 7))
        h, w = (int(v) for v in rng.integers(size // 5, size // 2, size=2))
        top, left = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
        colour_a = np.array(_random_colour(rng, (40, 160, 220)), np.float32)
        colour_b = np.array(_random_colour(rng, (200, 90, 30)), np.float32)
        cy, cx = np.mgrid[0:h, 0:w]
        checker = ((cy // cell + cx // cell) % 2).astype(bool)
        patch = np.where(checker[..., None], colour_a, colour_b)
        image[top:top + h, left:left + w] = patch
        label[top:top + h, left:left + w] = 4

    # Discs and polygons with hard edges.
    for _ in range(int(rng.integers(2, 5))):
        colour = _random_colour(rng, (60, 190, 80))
        mask = np.zeros((size, size), np.uint8)
        if rng.random() < 0.5:
            centre = tuple(int(v) for v in rng.integers(10, size - 10, size=2))
            cv2.circle(mask, centre, int(rng.integers(6, size // 6)), 1, thickness=-1)
        else:
            points = rng.integers(0, size, size=(int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(mask, [cv2.convexHull(points)], 1)
        image[mask.astype(bool)] = colour
        label[mask.astype(bool)] = 3

    # Thin wires on top of everything.
    for _ in range(int(rng.integers(3, 7))):
        colour = _random_colour(rng, (230, 40, 90))
        mask = np.zeros((size, size), np.uint8)
        thickness = int(rng.integers(1, 4))
        if rng.random() < 0.6:
            p0 = tuple(int(v) for v in rng.integers(0, size, size=2))
            p1 = tuple(int(v) for v in rng.integers(0, size, size=2))
            cv2.line(mask, p0, p1, 1, thickness=thickness)
        else:
            centre = tuple(int(v) for v in rng.integers(0, size, size=2))
            axes = tuple(int(v) for v in rng.integers(size // 8, size // 2, size=2))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0,
                        float(rng.uniform(90, 300)), 1, thickness=thickness)
        image[mask.astype(bool)] = colour
        label[mask.astype(bool)] = 2

    image += rng.normal(0, 12, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_synthetic_ade(data_root, num_train: int = 64, num_val: int = 16, size: int = 128,
                        seed: int = 0, overwrite: bool = False) -> Dict[str, int]:
    """Write the data set under ``data_root`` (idempotent; returns counts per split).

    An existing folder written with other arguments is refused unless ``overwrite`` is set, so
    data that is not ours is never replaced silently.
    """
    if size < MIN_SIZE:
        raise ValueError(f'size must be >= {MIN_SIZE} pixels, got {size}')
    root = Path(data_root)
    recipe = dict(num_train=num_train, num_val=num_val, size=size, seed=seed, classes=CLASSES)
    if already_written(root, 'synthetic_ade', recipe, overwrite):
        return {'training': num_train, 'validation': num_val}
    rng = np.random.default_rng(seed)
    counts = {}
    for split, count in (('training', num_train), ('validation', num_val)):
        image_dir = root / 'images' / split
        label_dir = root / 'annotations' / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, label = render_scene(rng, size)
            name = f'ADE_{_SPLITS[split]}_{index + 1:08d}'
            cv2.imwrite(str(image_dir / f'{name}.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(label_dir / f'{name}.png'), label)
        counts[split] = count
    write_stamp(root, 'synthetic_ade', recipe)
    return counts


def register_dataset() -> None:
    """Register :class:`SyntheticADE20KDataset` in mmseg's DATASETS (needs mmseg)."""
    from mmseg.datasets import ADE20KDataset
    from mmseg.registry import DATASETS

    if 'SyntheticADE20KDataset' in DATASETS.module_dict:
        return

    @DATASETS.register_module()
    class SyntheticADE20KDataset(ADE20KDataset):
        """mmseg's ``ADE20KDataset`` (same layout, suffixes, ``reduce_zero_label``) with the
        synthetic set's four classes instead of ADE20K's 150."""

        METAINFO = dict(classes=CLASSES, palette=[list(colour) for colour in PALETTE])
