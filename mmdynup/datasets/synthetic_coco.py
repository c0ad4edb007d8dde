"""A tiny synthetic detection / instance / panoptic set in COCO's on-disk layout.

Layout (what mmdet's ``CocoDataset`` and ``CocoPanopticDataset`` configs read from ``data_root``)::

    train2017/000000000001.jpg ...            val2017/...
    annotations/instances_{train,val}2017.json
    annotations/panoptic_{train,val}2017.json
    annotations/panoptic_{train,val}2017/000000000001.png ...

Each scene has two "stuff" regions (``sky-other-merged`` above a wavy horizon,
``grass-merged`` below) and 1-3 non-overlapping "things": discs (``person``) and rotated
rectangles (``car``). The JSON files list all of mmdet's COCO categories (80 things; 53 stuff in
the panoptic file), numbered 1, 2, ... in mmdet's class order, so a COCO config and its
CocoMetric run on this data with only ``data_root`` changed (a model's label i is category
i + 1). Instance masks are polygons; the panoptic PNG encodes segment
``id = R + 256 G + 256^2 B`` (COCO panoptic format), and every thing segment is the rasterised
polygon of its instance, so the two annotations agree pixel for pixel.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
from pycocotools import mask as mask_utils

#: The categories the scenes draw, by COCO name; their colours (BGR).
PERSON, CAR, SKY, GRASS = 'person', 'car', 'sky-other-merged', 'grass-merged'
_COLOURS = {PERSON: (60, 60, 220), CAR: (40, 200, 230), SKY: (235, 190, 120),
            GRASS: (70, 160, 60)}
_SPLITS = ('train2017', 'val2017')


def coco_categories() -> List[dict]:
    """mmdet's COCO panoptic categories (things first): ``id`` (1-based, in mmdet's order),
    ``name``, ``isthing``, ``supercategory``."""
    from mmdet.datasets import CocoPanopticDataset
    meta = CocoPanopticDataset.METAINFO
    things = set(meta['thing_classes'])
    return [dict(id=index + 1, name=name, isthing=int(name in things), supercategory='coco')
            for index, name in enumerate(meta['classes'])]


def _thing_polygon(rng: np.random.Generator, category: str, centre: np.ndarray,
                   radius: float) -> np.ndarray:
    """Polygon (N, 2) float32 of a disc (16 vertices) or a rotated rectangle (4 vertices)."""
    if category == PERSON:
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        offsets = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
    else:
        half = np.array([radius, radius * rng.uniform(0.45, 0.8)])
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        angle = rng.uniform(0, np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        offsets = corners @ rotation.T
    return (centre + offsets).astype(np.float32)


def _rasterise(polygon: np.ndarray, size: int) -> np.ndarray:
    """The polygon's mask as COCO tools (and so mmdet's ``poly2mask``) decode it."""
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon.flatten().tolist()], size, size))
    return mask_utils.decode(rle).astype(bool)


def _bbox(mask: np.ndarray) -> List[float]:
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1),
            float(rows.max() - rows.min() + 1)]


def render_scene(rng: np.random.Generator, size: int = 64):
    """One scene: (image HxWx3 uint8 BGR, list of (category name, polygon, mask) things,
    stuff masks {category name: HxW bool})."""
    columns = np.arange(size)
    horizon = size * rng.uniform(0.35, 0.6) + size * 0.06 * np.sin(
        columns / size * 2 * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * np.pi))
    sky = np.arange(size)[:, None] < horizon[None, :]
    image = np.zeros((size, size, 3), np.float32)
    image[sky] = _COLOURS[SKY]
    image[~sky] = _COLOURS[GRASS]
    things, occupied = [], np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            category = (PERSON, CAR)[int(rng.integers(0, 2))]
            radius = rng.uniform(size * 0.1, size * 0.2)
            centre = rng.uniform(radius + 1, size - radius - 1, size=2)
            polygon = _thing_polygon(rng, category, centre, radius)
            mask = _rasterise(polygon, size)
            # Keep things apart (and whole) so their polygons are also their visible masks.
            if mask.sum() >= 16 and not (mask & cv2.dilate(
                    occupied.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)).any():
                break
        else:
            continue
        occupied |= mask
        colour = np.clip(np.array(_COLOURS[category]) + rng.integers(-30, 31, 3), 0, 255)
        image[mask] = colour
        things.append((category, polygon, mask))
    image += rng.normal(0, 8, size=image.shape)
    stuff = {SKY: sky & ~occupied, GRASS: ~sky & ~occupied}
    return np.clip(image, 0, 255).astype(np.uint8), things, stuff


def _id_to_rgb(segment_ids: np.ndarray) -> np.ndarray:
    """COCO panoptic colour of segment ids (H, W) -> (H, W, 3) uint8 RGB."""
    return np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 256 ** 2],
                    axis=-1).astype(np.uint8)


def write_synthetic_coco(data_root, num_train: int = 8, num_val: int = 4, size: int = 64,
                         seed: int = 0) -> Dict[str, int]:
    """Write the set under ``data_root`` (must be empty or absent); returns images per split."""
    root = Path(data_root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f'data_root={str(root)!r} is not empty; write_synthetic_coco only '
                              f'writes into an empty or new folder')
    rng = np.random.default_rng(seed)
    categories = coco_categories()
    category_id = {category['name']: category['id'] for category in categories}
    counts, image_id, annotation_id = {}, 0, 0
    for split, count in zip(_SPLITS, (num_train, num_val)):
        image_dir = root / split
        panoptic_dir = root / 'annotations' / f'panoptic_{split}'
        image_dir.mkdir(parents=True)
        panoptic_dir.mkdir(parents=True)
        images, instances, panoptic = [], [], []
        for _ in range(count):
            image_id += 1
            image, things, stuff = render_scene(rng, size)
            file_name = f'{image_id:012d}.jpg'
            cv2.imwrite(str(image_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name, height=size, width=size))
            segments = np.zeros((size, size), np.int64)
            segments_info = []
            for category, polygon, mask in things:
                annotation_id += 1
                instances.append(dict(
                    id=annotation_id, image_id=image_id, category_id=category_id[category],
                    iscrowd=0,
                    segmentation=[polygon.flatten().tolist()],
                    area=float(mask.sum()), bbox=_bbox(mask)))
                segments_info.append(dict(id=annotation_id, category_id=category_id[category],
                                          iscrowd=0, area=int(mask.sum()), bbox=_bbox(mask)))
                segments[mask] = annotation_id
            for category, mask in stuff.items():
                if mask.any():
                    annotation_id += 1
                    segments_info.append(dict(
                        id=annotation_id, category_id=category_id[category], iscrowd=0,
                        area=int(mask.sum()), bbox=_bbox(mask)))
                    segments[mask] = annotation_id
            png_name = file_name.replace('.jpg', '.png')
            cv2.imwrite(str(panoptic_dir / png_name), _id_to_rgb(segments)[..., ::-1])  # BGR
            panoptic.append(dict(image_id=image_id, file_name=png_name,
                                 segments_info=segments_info))
        thing_categories = [c for c in categories if c['isthing']]
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(dict(
            images=images, annotations=instances, categories=thing_categories)))
        (root / 'annotations' / f'panoptic_{split}.json').write_text(json.dumps(dict(
            images=images, annotations=panoptic, categories=categories)))
        counts[split] = count
    return counts
