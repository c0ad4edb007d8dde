"""The matting data pipeline: load, trimaps from alpha, flip, crop around the unknown region,
composite, pack (the A2U / IndexNet training recipe, dongdong93/a2u_matting
``scripts/data_generator.py``, as mmcv transforms).

Training (one foreground ``fg`` with its ``alpha`` and one background ``bg`` per sample)::

    LoadMattingImages -> RandomMattingFlip -> GenerateTrimap -> CropAroundUnknown
    -> CompositeImage -> PackMattingInputs

Test (a merged image with its ``alpha`` and ``trimap``)::

    LoadMattingImages -> PackMattingInputs

Images stay BGR uint8 (H, W, 3) as cv2 reads them (the data preprocessor converts to RGB),
``alpha`` float32 (H, W) in [0, 1], ``trimap`` uint8 (H, W) with 0 / 128 / 255. Not taken from the
authors' recipe: their random affine warp, HSV jitter and two-foreground mixing.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement
from mmseg.registry import TRANSFORMS

from ..checks import check_positive_int
from .errors import TRIMAP_VALUES

#: Colour images of a sample, and the single-channel maps.
COLOUR_KEYS = ('fg', 'bg', 'merged')
MAP_KEYS = ('alpha', 'trimap')


def read_image(path: str, key: str, flag: int) -> np.ndarray:
    image = cv2.imread(path, flag)
    if image is None:
        raise FileNotFoundError(f'cannot read the {key} image {path!r} (missing or not an image); '
                                f'check the data set layout (configs/matting/README.md)')
    return image


def check_trimap_values(trimap: np.ndarray, path: str) -> None:
    wrong = np.setdiff1d(np.unique(trimap), TRIMAP_VALUES)
    if wrong.size:
        raise ValueError(f'trimap {path!r} has values {wrong[:5].tolist()} besides 0 / 128 / 255; '
                         f'a Composition-1K trimap holds only background (0), unknown (128) and '
                         f'foreground (255)')


@TRANSFORMS.register_module()
class LoadMattingImages(BaseTransform):
    """Read every ``<key>_path`` of the sample: ``fg``, ``bg``, ``merged`` as BGR uint8
    (H, W, 3), ``alpha`` as float32 (H, W) in [0, 1] (a colour file read as grey: its channels
    are equal in Composition-1K), ``trimap`` as uint8 (H, W) with values 0 / 128 / 255. Sizes
    of ``fg`` / ``merged``, ``alpha`` and ``trimap`` must agree; the background may be any
    size."""

    def transform(self, results: Dict) -> Dict:
        for key in COLOUR_KEYS:
            if f'{key}_path' in results:
                results[key] = read_image(results[f'{key}_path'], key, cv2.IMREAD_COLOR)
        if 'alpha_path' in results:
            alpha = read_image(results['alpha_path'], 'alpha', cv2.IMREAD_GRAYSCALE)
            results['alpha'] = alpha.astype(np.float32) / 255
        if 'trimap_path' in results:
            trimap = read_image(results['trimap_path'], 'trimap', cv2.IMREAD_GRAYSCALE)
            check_trimap_values(trimap, results['trimap_path'])
            results['trimap'] = trimap
        image_key = 'merged' if 'merged' in results else 'fg'
        shape = results[image_key].shape[:2]
        for key in MAP_KEYS:
            if key in results and results[key].shape != shape:
                raise ValueError(f'{key} {results[f"{key}_path"]!r} is {results[key].shape} but '
                                 f'{image_key} {results[f"{image_key}_path"]!r} is {shape}; a '
                                 f'matte and its image must have the same size')
        results['ori_shape'] = shape
        return results


@TRANSFORMS.register_module()
class RandomMattingFlip(BaseTransform):
    """Flip ``fg``, ``bg``, ``merged``, ``alpha`` and ``trimap`` left-right together with
    probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must lie in [0, 1], got {prob!r}')
        self.prob = prob

    def transform(self, results: Dict) -> Dict:
        if np.random.rand() < self.prob:
            for key in COLOUR_KEYS + MAP_KEYS:
                if key in results:
                    results[key] = np.ascontiguousarray(results[key][:, ::-1])
        return results


@TRANSFORMS.register_module()
class GenerateTrimap(BaseTransform):
    """A random trimap from ``alpha``: the definite foreground (alpha = 1) and background
    (alpha = 0) are eroded by elliptic kernels of random sizes in ``kernel_sizes`` (the two
    drawn independently; the authors' 1 .. 29), what remains of them is 255 / 0, the rest 128.
    """

    def __init__(self, kernel_sizes: Sequence[int] = (1, 29)) -> None:
        low, high = (check_positive_int('kernel_sizes', size) for size in kernel_sizes)
        if low > high:
            raise ValueError(f'kernel_sizes must be (smallest, largest), got {kernel_sizes!r}')
        self.kernel_sizes = (low, high)

    def transform(self, results: Dict) -> Dict:
        alpha = results['alpha']
        trimap = np.full(alpha.shape, 128, np.uint8)
        for value, definite in ((255, alpha >= 1 - 1e-5), (0, alpha <= 1e-5)):
            size = int(np.random.randint(self.kernel_sizes[0], self.kernel_sizes[1] + 1))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
            trimap[cv2.erode(definite.astype(np.uint8), kernel) == 1] = value
        results['trimap'] = trimap
        return results


@TRANSFORMS.register_module()
class CropAroundUnknown(BaseTransform):
    """A ``crop_size`` crop of ``fg``, ``alpha``, ``trimap`` and ``bg`` centred on a random unknown
    pixel (trimap 128) at least half a crop from the border; a random crop when fewer than 10
    such pixels exist. A foreground not larger than the crop is first enlarged (nearest
    neighbour) to 1.1 x the crop on its shorter side, and the background (bicubic) to cover it.
    """

    def __init__(self, crop_size: int | Tuple[int, int] = 512) -> None:
        sizes = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(sizes) != 2:
            raise ValueError(f'crop_size must be an int or (height, width), got {crop_size!r}')
        self.crop_size = tuple(check_positive_int('crop_size', size) for size in sizes)

    def transform(self, results: Dict) -> Dict:
        crop_h, crop_w = self.crop_size
        height, width = results['alpha'].shape
        if height <= crop_h or width <= crop_w:
            ratio = 1.1 * max(crop_h / height, crop_w / width)
            size = (math.ceil(width * ratio), math.ceil(height * ratio))
            for key in ('fg', 'alpha', 'trimap'):
                results[key] = cv2.resize(results[key], size, interpolation=cv2.INTER_NEAREST)
            height, width = results['alpha'].shape
        bg = results['bg']
        cover = max(height / bg.shape[0], width / bg.shape[1])
        if cover > 1:
            bg = cv2.resize(bg, (math.ceil(bg.shape[1] * cover), math.ceil(bg.shape[0] * cover)),
                            interpolation=cv2.INTER_CUBIC)
        margin_h, margin_w = crop_h // 2, crop_w // 2
        inner = results['trimap'][margin_h:height - margin_h, margin_w:width - margin_w] == 128
        rows, cols = np.nonzero(inner)
        if rows.size >= 10:
            pick = np.random.randint(rows.size)
            top, left = int(rows[pick]), int(cols[pick])  # inner (i, j) is centre (i + m, j + m)
        else:
            top = np.random.randint(height - crop_h + 1)
            left = np.random.randint(width - crop_w + 1)
        top, left = min(top, height - crop_h), min(left, width - crop_w)
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        for key in ('fg', 'alpha', 'trimap'):
            results[key] = np.ascontiguousarray(results[key][window])
        results['bg'] = np.ascontiguousarray(bg[window])
        return results


@TRANSFORMS.register_module()
class CompositeImage(BaseTransform):
    """``merged = fg * alpha + bg * (1 - alpha)`` (float32, 0..255) from same-size ``fg``,
    ``bg`` and ``alpha``."""

    def transform(self, results: Dict) -> Dict:
        alpha = results['alpha'][..., None]
        results['fg'], results['bg'] = (results[key].astype(np.float32) for key in ('fg', 'bg'))
        results['merged'] = results['fg'] * alpha + results['bg'] * (1 - alpha)
        return results


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


@TRANSFORMS.register_module()
class PackMattingInputs(BaseTransform):
    """``dict(inputs, data_samples)``: ``inputs`` the merged image (3, H, W) float32 BGR 0..255;
    ``data_samples`` a ``BaseDataElement`` holding ``trimap`` (1, H, W) uint8, ``gt_alpha``
    (1, H, W) float32 and, when present (training), ``fg`` / ``bg`` (3, H, W) float32 BGR, with
    the metainfo ``img_path``, ``ori_shape`` and ``meta_keys``."""

    def __init__(self, meta_keys: Optional[Sequence[str]] = ('sample_idx',)) -> None:
        self.meta_keys = tuple(meta_keys or ())

    def transform(self, results: Dict) -> Dict:
        sample = BaseDataElement(metainfo=dict(
            img_path=results.get('merged_path', results.get('fg_path')),
            ori_shape=tuple(results['merged'].shape[:2]),
            **{key: results[key] for key in self.meta_keys if key in results}))
        sample.trimap = torch.from_numpy(np.ascontiguousarray(results['trimap']))[None]
        sample.gt_alpha = torch.from_numpy(np.ascontiguousarray(results['alpha']))[None].float()
        for key in ('fg', 'bg'):
            if key in results:
                setattr(sample, key, _chw(results[key]))
        return dict(inputs=_chw(results['merged']), data_samples=sample)
