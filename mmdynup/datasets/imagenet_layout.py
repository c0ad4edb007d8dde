"""An ImageNet-layout classification data set for mmengine, and a synthetic one written in it.

Layout (the one ``torchvision.datasets.ImageFolder`` and the authors' ``data/dataset/
imagefolder_dataset.py`` read; mmpretrain's ``ImageNet`` reads it too)::

    data_root/train/<wnid>/<name>.JPEG        one folder per class
    data_root/val/<wnid>/<name>.JPEG          class folders, or
    data_root/val/<name>.JPEG + ann_file      lines "<name>.JPEG <label>" (as meta/val.txt)

Labels are the indices of the class folder names of ``classes_from`` (default ``train``) in
sorted order, so a validation split gets the training split's indices.

We read it ourselves instead of through mmpretrain: mmpretrain 1.2 imports torchvision at import
time, and no torchvision release installs beside the torch this project pins; this reader and
:mod:`.classification_transforms` need only numpy, cv2 and torch.
"""
from __future__ import annotations

import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS as ENGINE_DATASETS
from mmengine.registry import Registry

from ..checks import check_positive_int
from .recipe_stamp import already_written, write_stamp

DATASETS = Registry('dataset', parent=ENGINE_DATASETS, scope='mmdynup')
IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png', '.bmp')


def class_folders(folder: str) -> List[str]:
    """Sorted names of the sub-folders of ``folder`` (the classes)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'class folder root {folder!r} does not exist; expected '
                                f'<data_root>/train/<wnid>/*.JPEG')
    names = sorted(entry.name for entry in Path(folder).iterdir() if entry.is_dir())
    if not names:
        raise ValueError(f'{folder!r} holds no class folders (expected <wnid>/ sub-folders)')
    return names


@DATASETS.register_module()
class ImageNetLayout(BaseDataset):
    """Image classification items ``dict(img_path, gt_label)`` from an ImageNet-layout folder.

    Args:
        data_root: the folder holding ``train/`` and ``val/``.
        data_prefix: ``dict(img_path='train')`` or ``'val'``: the split's image folder.
        ann_file: optional list file (relative to ``data_root``) of ``<path> <label>`` lines,
            paths relative to the image folder; without it the image folder has class folders.
        classes_from: the folder (relative to ``data_root``) whose sorted sub-folders name the
            classes (default ``'train'``).
        pipeline, test_mode, indices, lazy_init, serialize_data: as mmengine's ``BaseDataset``.
    """

    def __init__(self, data_root: str = '', data_prefix: Optional[dict] = None,
                 ann_file: str = '', classes_from: str = 'train', **kwargs):
        self.classes_from = classes_from
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=dict(img_path='train') if data_prefix is None
                         else data_prefix, **kwargs)

    def _class_names(self) -> List[str]:
        return class_folders(osp.join(self.data_root, self.classes_from))

    def load_data_list(self) -> List[dict]:
        classes = self._class_names()
        self._metainfo['classes'] = tuple(classes)
        image_root = self.data_prefix['img_path']
        if self.ann_file:
            return self._from_list_file(image_root, len(classes))
        items = []
        for label, name in enumerate(classes):
            folder = Path(image_root) / name
            if not folder.is_dir():
                continue  # a class without images in this split
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    items.append(dict(img_path=str(path), gt_label=label))
        if not items:
            raise ValueError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {image_root!r}/'
                             f'<class>/; for a flat folder pass ann_file')
        return items

    def _from_list_file(self, image_root: str, num_classes: int) -> List[dict]:
        items = []
        with open(self.ann_file) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                    raise ValueError(f'{self.ann_file}:{number}: expected "<path> <label>", '
                                     f'got {line.strip()!r}')
                label = int(parts[1])
                if not 0 <= label < num_classes:
                    raise ValueError(f'{self.ann_file}:{number}: label {label} is not in '
                                     f'[0, {num_classes}) (classes of {self.classes_from}/)')
                items.append(dict(img_path=osp.join(image_root, parts[0]), gt_label=label))
        return items


# --------------------------------------------------------------------------- synthetic set
def render_class_image(rng: np.random.Generator, label: int, num_classes: int,
                       size: int) -> np.ndarray:
    """(size, size, 3) uint8 BGR: a grating of random orientation, frequency and phase between a
    dark and a light shade of the class's hue (``label / num_classes`` of the colour circle,
    jittered), plus noise. The hue survives flips, crops, rotations and mixing, so a classifier
    can learn it from a few images; the grating gives pretraining structure to reconstruct."""
    angle = rng.uniform(0, np.pi)
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float64) / size
    wave = np.sin(2 * np.pi * rng.uniform(1.5, 3.5) * (np.cos(angle) * columns
                                                       + np.sin(angle) * rows)
                  + rng.uniform(0, 2 * np.pi))
    hue = int(round(180 * (label / num_classes + rng.normal(0, 0.02)))) % 180  # OpenCV: 0-179
    shades = np.array([[[hue, rng.uniform(150, 255), rng.uniform(40, 110)],
                        [hue, rng.uniform(150, 255), rng.uniform(170, 250)]]], np.uint8)
    dark, light = cv2.cvtColor(shades, cv2.COLOR_HSV2BGR)[0].astype(np.float64)
    image = dark + (light - dark) * (wave[..., None] + 1) / 2
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_imagenet(data_root, num_classes: int = 3, train_per_class: int = 4,
                             val_per_class: int = 2, size: int = 40, seed: int = 0,
                             overwrite: bool = False) -> Dict[str, int]:
    """Write a tiny ImageNet-layout set (idempotent; returns the image count per split).

    ``train/`` and ``val/`` hold class folders ``n0000000k`` (ImageNet's wnid form) of JPEG
    images from :func:`render_class_image`; ``meta/val.txt`` lists the validation images as
    ``<wnid>/<name>.JPEG <label>`` for the list-file form. An existing folder written with other
    arguments is refused unless ``overwrite`` is set.
    """
    for name, value in (('num_classes', num_classes), ('train_per_class', train_per_class),
                        ('val_per_class', val_per_class), ('size', size)):
        check_positive_int(name, value)
    root = Path(data_root)
    recipe = dict(num_classes=num_classes, train_per_class=train_per_class,
                  val_per_class=val_per_class, size=size, seed=seed)
    counts = {'train': num_classes * train_per_class, 'val': num_classes * val_per_class}
    if already_written(root, 'synthetic_imagenet', recipe, overwrite):
        return counts
    rng = np.random.default_rng(seed)
    val_lines: List[str] = []
    splits: Sequence[Tuple[str, int]] = (('train', train_per_class), ('val', val_per_class))
    for split, per_class in splits:
        for label in range(num_classes):
            wnid = f'n{label:08d}'
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                name = f'{split}_{label:03d}_{index:04d}.JPEG'
                cv2.imwrite(str(folder / name), render_class_image(rng, label, num_classes, size),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                if split == 'val':
                    val_lines.append(f'{wnid}/{name} {label}')
    (root / 'meta').mkdir(exist_ok=True)
    (root / 'meta' / 'val.txt').write_text('\n'.join(val_lines) + '\n')
    write_stamp(root, 'synthetic_imagenet', recipe)
    return counts
