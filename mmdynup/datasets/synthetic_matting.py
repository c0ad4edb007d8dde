"""A tiny synthetic matting set in the Composition-1K layout that ``CompositionMattingDataset``
reads (``mmdynup.matting``): foregrounds with soft, hair-like fringes over textured backgrounds.

Layout (the Adobe Composition-1K folders, training foregrounds merged into one folder)::

    data_root/Training_set/fg/<name>.png          foreground colours (defined everywhere)
    data_root/Training_set/alpha/<name>.png       8-bit alpha matte
    data_root/Training_set/bg/<bg>.jpg            backgrounds (composited on the fly)
    data_root/Test_set/merged/<name>_<j>.png      fg * alpha + bg * (1 - alpha)
    data_root/Test_set/alpha/<name>.png           alpha of foreground <name>
    data_root/Test_set/trimaps/<name>_<j>.png     trimap 0 / 128 / 255 of each composite

A matte is an opaque ellipse whose edge is blurred, plus thin random-walk strands (alpha 0.35
to 0.9, slightly blurred) leaving its boundary, so the unknown region holds both smooth
transitions and one-pixel structures. Test trimaps mark as unknown everything that is neither
alpha = 0 nor alpha = 1 after an erosion of both by a 5 x 5 ellipse.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import cv2
import numpy as np

from .recipe_stamp import already_written, write_stamp

MIN_SIDE = 32
#: Erosion of the definite regions when drawing the test trimaps.
TEST_TRIMAP_KERNEL = 5


def render_matte(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One alpha matte (H, W) float64 in [0, 1]: blurred opaque ellipse + hair-like strands."""
    centre = (int(rng.integers(width // 3, 2 * width // 3 + 1)),
              int(rng.integers(height // 3, 2 * height // 3 + 1)))
    axes = (int(rng.integers(width // 8, width // 4 + 1)),
            int(rng.integers(height // 8, height // 4 + 1)))
    angle = float(rng.uniform(0, 180))
    core = np.zeros((height, width), np.float32)
    cv2.ellipse(core, centre, axes, angle, 0, 360, 1.0, thickness=-1)
    core = cv2.GaussianBlur(core, (0, 0), sigmaX=float(rng.uniform(0.8, 2.0)))
    strands = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(6, 14))):
        theta = rng.uniform(0, 2 * np.pi)
        point = np.array([centre[0] + axes[0] * np.cos(theta), centre[1] + axes[1] * np.sin(theta)])
        direction = theta
        path = [point.copy()]
        for _ in range(int(rng.integers(4, 10))):
            direction += rng.normal(0, 0.35)
            point = point + rng.uniform(1.5, 3.0) * np.array([np.cos(direction), np.sin(direction)])
            path.append(point.copy())
        cv2.polylines(strands, [np.round(np.array(path)).astype(np.int32)], False,
                      float(rng.uniform(0.35, 0.9)), thickness=1, lineType=cv2.LINE_AA)
    strands = cv2.GaussianBlur(strands, (0, 0), sigmaX=0.6)
    return np.clip(np.maximum(core, strands), 0, 1).astype(np.float64)


def render_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured colour image (H, W, 3) float64 in 0..255: stripes, a colour ramp and noise."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    period, angle = rng.uniform(4, 16), rng.uniform(0, np.pi)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (u * np.cos(angle) + v * np.sin(angle)) / period)
    low, high = rng.uniform(20, 120, size=3), rng.uniform(130, 240, size=3)
    ramp = (u / width)[..., None]
    image = low + (high - low) * (0.6 * stripes[..., None] + 0.4 * ramp)
    return np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255)


def trimap_from_alpha(alpha: np.ndarray, kernel_size: int = TEST_TRIMAP_KERNEL) -> np.ndarray:
    """uint8 trimap: 255 / 0 where the eroded alpha = 1 / alpha = 0 regions remain, else 128."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    quantised = np.round(alpha * 255)
    foreground = cv2.erode((quantised == 255).astype(np.uint8), kernel)
    background = cv2.erode((quantised == 0).astype(np.uint8), kernel)
    trimap = np.full(alpha.shape, 128, np.uint8)
    trimap[foreground == 1] = 255
    trimap[background == 1] = 0
    return trimap


def composite(foreground: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``fg * alpha + bg * (1 - alpha)``, (H, W, 3) in 0..255."""
    return foreground * alpha[..., None] + background * (1 - alpha[..., None])


def _write_image(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), np.clip(np.round(image), 0, 255).astype(np.uint8))


def write_synthetic_matting(data_root, num_train: int = 4, num_test: int = 2,
                            num_backgrounds: int = 4, height: int = 64, width: int = 64,
                            seed: int = 0, overwrite: bool = False) -> Dict[str, int]:
    """Write the set under ``data_root`` (idempotent; returns the count of each folder kind).

    Each test foreground is composited over one background (``<name>_0.png``, Composition-1K's
    naming of the 20 composites per foreground). An existing folder written with other arguments
    is refused unless ``overwrite`` is set.
    """
    if min(height, width) < MIN_SIDE:
        raise ValueError(f'height and width must be >= {MIN_SIDE} pixels, got {height}x{width}')
    for name, value in (('num_train', num_train), ('num_test', num_test),
                        ('num_backgrounds', num_backgrounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    root = Path(data_root)
    recipe = dict(num_train=num_train, num_test=num_test, num_backgrounds=num_backgrounds,
                  height=height, width=width, seed=seed)
    counts = {'train_fg': num_train, 'train_bg': num_backgrounds, 'test_merged': num_test}
    if already_written(root, 'synthetic_matting', recipe, overwrite):
        return counts
    rng = np.random.default_rng(seed)
    folders = {key: root / path for key, path in (
        ('fg', 'Training_set/fg'), ('alpha', 'Training_set/alpha'), ('bg', 'Training_set/bg'),
        ('merged', 'Test_set/merged'), ('test_alpha', 'Test_set/alpha'),
        ('trimaps', 'Test_set/trimaps'))}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for index in range(num_train):
        name = f'train_{index:04d}'
        _write_image(folders['fg'] / f'{name}.png', render_texture(rng, height, width))
        _write_image(folders['alpha'] / f'{name}.png', 255 * render_matte(rng, height, width))
    for index in range(num_backgrounds):
        cv2.imwrite(str(folders['bg'] / f'bg_{index:04d}.jpg'),
                    np.round(render_texture(rng, height, width)).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    for index in range(num_test):
        name = f'test_{index:04d}'
        alpha = np.round(255 * render_matte(rng, height, width)) / 255  # the 8-bit matte on disk
        foreground, background = (render_texture(rng, height, width) for _ in range(2))
        _write_image(folders['merged'] / f'{name}_0.png', composite(foreground, background, alpha))
        _write_image(folders['test_alpha'] / f'{name}.png', 255 * alpha)
        cv2.imwrite(str(folders['trimaps'] / f'{name}_0.png'), trimap_from_alpha(alpha))
    write_stamp(root, 'synthetic_matting', recipe)
    return counts

