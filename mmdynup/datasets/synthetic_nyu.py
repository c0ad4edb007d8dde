"""A tiny synthetic depth set written in the on-disk layout of mmseg's ``NYUDataset``.

Layout (what ``NYUDataset`` with mmseg's NYU base config reads)::

    data_root/images/{train,test}/<room>_<00001>.jpg          RGB
    data_root/annotations/{train,test}/<room>_<00001>.png     uint16 depth, millimetres

File names start with one of NYU's scene categories and carry a digit (``NYUDataset`` derives
``category_id`` from the text before the first digit and raises on a name without one); depth is
read back in metres by ``LoadDepthAnnotation(depth_rescale_factor=1e-3)``.

Scenes are rendered, not drawn: a pinhole camera (focal length 0.8 W, principal point at the
centre, NYU's 518.9 px over 640 px is 0.81 W) looks into a box-shaped room; each pixel's depth is
the z distance of the nearest of floor, ceiling, side walls and back wall along its ray, and
fronto-parallel boxes stand in front at known depths (their pixel footprint follows from the
same projection). Colours are textured in world coordinates (floor tiles, wall stripes) and
darkened with distance, so depth is recoverable from perspective and shading; sensor holes
(depth 0, as in raw Kinect maps) mark a few pixels invalid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np

from .recipe_stamp import already_written, write_stamp

ROOMS: Tuple[str, ...] = ('bedroom', 'kitchen', 'living_room', 'office', 'bathroom')
SPLITS: Tuple[str, ...] = ('train', 'test')
MIN_SIDE = 32
MAX_DEPTH_M = 10.0


def render_room(rng: np.random.Generator, height: int = 120,
                width: int = 160) -> Tuple[np.ndarray, np.ndarray]:
    """One (image HxWx3 uint8 BGR, depth HxW float64 metres, 0 = invalid) pair."""
    if min(height, width) < MIN_SIDE:
        raise ValueError(f'height and width must be >= {MIN_SIDE} pixels, got {height}x{width}')
    focal = 0.8 * width
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    ray_x, ray_y = (u + 0.5 - width / 2) / focal, (v + 0.5 - height / 2) / focal  # y points down
    camera_height = rng.uniform(1.2, 1.6)
    room_height = rng.uniform(2.5, 3.0)
    left, right = -rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0)
    back = rng.uniform(4.0, 9.0)

    big = np.full((height, width), np.inf)
    # z at which each ray meets a plane: y = camera_height (floor), y = camera_height - room
    # height (ceiling), x = left / right (walls), z = back (back wall).
    with np.errstate(divide='ignore', invalid='ignore'):
        planes = {
            'floor': np.where(ray_y > 0, camera_height / ray_y, big),
            'ceiling': np.where(ray_y < 0, (camera_height - room_height) / ray_y, big),
            'left': np.where(ray_x < 0, left / ray_x, big),
            'right': np.where(ray_x > 0, right / ray_x, big),
            'back': np.full((height, width), back),
        }
    names = list(planes)
    stack = np.stack([planes[name] for name in names])
    surface = stack.argmin(axis=0)
    depth = stack.min(axis=0)
    world_x, world_y = ray_x * depth, ray_y * depth

    base = {name: rng.uniform(70, 220, size=3) for name in names}
    image = np.zeros((height, width, 3))
    for index, name in enumerate(names):
        mask = surface == index
        if name in ('floor', 'ceiling'):
            tiles = (np.floor(world_x / 0.5) + np.floor(depth / 0.5)) % 2  # 0.5 m tiles
        else:
            along = depth if name in ('left', 'right') else world_x
            tiles = np.floor(along / 0.4) % 2  # vertical stripes 0.4 m wide
        image[mask] = base[name] * (0.85 + 0.15 * tiles[mask, None])

    # Boxes standing on the floor at known depth, front faces parallel to the image plane.
    for _ in range(int(rng.integers(1, 4))):
        z = rng.uniform(1.0, back - 0.3)
        half_width, box_height = rng.uniform(0.2, 0.6), rng.uniform(0.3, 1.5)
        centre_x = rng.uniform(left + half_width, right - half_width)
        u0, u1 = (width / 2 + focal * (centre_x + np.array([-half_width, half_width])) / z)
        v1 = height / 2 + focal * camera_height / z
        v0 = height / 2 + focal * (camera_height - box_height) / z
        inside = (u + 0.5 >= u0) & (u + 0.5 < u1) & (v + 0.5 >= v0) & (v + 0.5 < v1) & (depth > z)
        depth[inside] = z
        image[inside] = rng.uniform(40, 240, size=3)

    image *= np.clip(1.15 - 0.07 * depth, 0.35, 1.0)[..., None]  # farther is darker
    image += rng.normal(0, 4, size=image.shape)
    depth = np.minimum(depth, MAX_DEPTH_M)
    for _ in range(int(rng.integers(0, 3))):  # sensor holes
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        cv2.circle(depth, (cx, cy), int(rng.integers(2, 6)), 0.0, thickness=-1)
    return np.clip(image, 0, 255).astype(np.uint8), depth


def write_synthetic_nyu(data_root, num_train: int = 16, num_test: int = 4, height: int = 120,
                        width: int = 160, seed: int = 0,
                        overwrite: bool = False) -> Dict[str, int]:
    """Write the set under ``data_root`` (idempotent; returns the image count per split).

    An existing folder written with other arguments is refused unless ``overwrite`` is set.
    """
    if min(height, width) < MIN_SIDE:
        raise ValueError(f'height and width must be >= {MIN_SIDE} pixels, got {height}x{width}')
    root = Path(data_root)
    recipe = dict(num_train=num_train, num_test=num_test, height=height, width=width, seed=seed)
    if already_written(root, 'synthetic_nyu', recipe, overwrite):
        return {'train': num_train, 'test': num_test}
    rng = np.random.default_rng(seed)
    for split, count in zip(SPLITS, (num_train, num_test)):
        image_dir, depth_dir = root / 'images' / split, root / 'annotations' / split
        image_dir.mkdir(parents=True, exist_ok=True)
        depth_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, depth = render_room(rng, height, width)
            name = f'{ROOMS[index % len(ROOMS)]}_{index + 1:05d}'
            cv2.imwrite(str(image_dir / f'{name}.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            millimetres = np.round(depth * 1000).astype(np.uint16)
            cv2.imwrite(str(depth_dir / f'{name}.png'), millimetres)
    write_stamp(root, 'synthetic_nyu', recipe)
    return {'train': num_train, 'test': num_test}
