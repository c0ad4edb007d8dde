"""RandAugment ``rand-m9-mstd0.5-inc1`` on numpy / cv2: timm's policy as MIRL fine-tunes with it.

The authors' ``main_finetune.py`` (``russellllaputa/MIRL``) applies ``TimmAutoAugment(
config_str='rand-m9-mstd0.5-inc1', interpolation='bicubic', img_size=224, mean=ImageNet mean)``
(their ``data/preprocess/timm_autoaugment.py``, a port of timm's ``auto_augment.py``): per image
two operations drawn with replacement from the 15 "increasing" ones, each applied with
probability 0.5 at a magnitude drawn from N(9, 0.5) clipped to [0, 10] (of 10); geometric
operations fill with the ImageNet mean (124, 116, 104) and resample bicubically.

Every operation is written after PIL's definition (``ImageOps``, ``ImageEnhance``,
``Image.transform``), on (H, W, 3) uint8 RGB arrays. Point operations and blends equal PIL's
(tested against PIL where it is installed); geometric ones use cv2's bicubic kernel
(a = -0.75, PIL's is -0.5), with PIL's pixel-centre convention for the affine maps.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .classification_transforms import TRANSFORMS

MAX_LEVEL = 10.0
#: timm's ``_RAND_INCREASING_TRANSFORMS`` (severity grows with the magnitude).
INCREASING_OPS: Tuple[str, ...] = (
    'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing', 'SolarizeIncreasing',
    'SolarizeAdd', 'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing',
    'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
IMAGENET_MEAN = (0.485, 0.456, 0.406)


# --------------------------------------------------------------------------- point operations
def _apply_lut(image: np.ndarray, luts: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([lut[image[..., c]] for c, lut in enumerate(luts)], axis=-1)


def auto_contrast(image: np.ndarray) -> np.ndarray:
    """``ImageOps.autocontrast`` (cutoff 0): each channel stretched from its [min, max]."""
    luts = []
    for c in range(image.shape[-1]):
        values = image[..., c]
        low, high = int(values.min()), int(values.max())
        levels = np.arange(256)
        if high <= low:
            luts.append(levels.astype(np.uint8))
            continue
        scale = 255.0 / (high - low)
        lut = (levels * scale - low * scale).astype(np.int64)  # PIL truncates with int()
        luts.append(np.clip(lut, 0, 255).astype(np.uint8))
    return _apply_lut(image, luts)


def equalize(image: np.ndarray) -> np.ndarray:
    """``ImageOps.equalize``: PIL's per-channel histogram equalisation table."""
    luts = []
    for c in range(image.shape[-1]):
        histogram = np.bincount(image[..., c].ravel(), minlength=256)
        nonzero = histogram[histogram > 0]
        step = (int(nonzero.sum()) - int(nonzero[-1])) // 255 if len(nonzero) > 1 else 0
        if step == 0:
            luts.append(np.arange(256, dtype=np.uint8))
            continue
        starts = step // 2 + np.concatenate([[0], np.cumsum(histogram)[:-1]])
        luts.append(np.clip(starts // step, 0, 255).astype(np.uint8))
    return _apply_lut(image, luts)


def invert(image: np.ndarray) -> np.ndarray:
    return 255 - image


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keep the ``bits`` most significant bits (8 or more: unchanged)."""
    if bits >= 8:
        return image.copy()
    return image & np.uint8(~(2 ** (8 - bits) - 1) & 0xFF)


def solarize(image: np.ndarray, threshold: int) -> np.ndarray:
    """Invert the values >= ``threshold``."""
    return np.where(image >= threshold, 255 - image, image).astype(np.uint8)


def solarize_add(image: np.ndarray, add: int, threshold: int = 128) -> np.ndarray:
    """Add ``add`` (saturating) to the values below ``threshold``."""
    added = np.minimum(image.astype(np.int16) + add, 255).astype(np.uint8)
    return np.where(image < threshold, added, image)


def grayscale(image: np.ndarray) -> np.ndarray:
    """PIL's RGB -> L (ITU-R 601-2 luma, 16-bit fixed point, rounded): (H, W) uint8."""
    weighted = (image[..., 0].astype(np.int64) * 19595 + image[..., 1].astype(np.int64) * 38470
                + image[..., 2].astype(np.int64) * 7471 + 0x8000)
    return (weighted >> 16).astype(np.uint8)


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
    """``Image.blend(degenerate, image, factor)``: float32 mix, clipped, truncated as PIL."""
    mixed = degenerate.astype(np.float32) + np.float32(factor) * (
        image.astype(np.float32) - degenerate.astype(np.float32))
    return np.clip(mixed, 0, 255).astype(np.uint8)


def color(image: np.ndarray, factor: float) -> np.ndarray:
    """``ImageEnhance.Color``: blend with the grey image (0: grey, 1: unchanged)."""
    return _blend(np.repeat(grayscale(image)[..., None], 3, axis=-1), image, factor)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """``ImageEnhance.Contrast``: blend with the rounded mean grey level."""
    mean = int(grayscale(image).mean() + 0.5)
    return _blend(np.full_like(image, mean), image, factor)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """``ImageEnhance.Brightness``: blend with black."""
    return _blend(np.zeros_like(image), image, factor)


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """``ImageEnhance.Sharpness``: blend with PIL's SMOOTH filter (3x3, centre 5, others 1,
    / 13, rounded; the one-pixel border copied unfiltered)."""
    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = 5
    smooth = cv2.filter2D(image.astype(np.float32), -1, kernel / 13.0,
                          borderType=cv2.BORDER_REPLICATE)
    smooth = np.clip(np.floor(smooth + 0.5), 0, 255).astype(np.uint8)
    smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = image[0], image[-1], image[:, 0], \
        image[:, -1]
    return _blend(smooth, image, factor)


# --------------------------------------------------------------------------- geometric operations
def pil_affine(image: np.ndarray, coefficients: Sequence[float],
               fill: Tuple[int, int, int]) -> np.ndarray:
    """``Image.transform(size, AFFINE, (a, b, c, d, e, f))``: output pixel centre (x, y) reads
    input (a x + b y + c, d x + e y + f); bicubic, ``fill`` outside."""
    a, b, c, d, e, f = coefficients
    # PIL works on pixel centres (index + 0.5); cv2 on indices.
    matrix = np.array([[a, b, c + 0.5 * (a + b) - 0.5],
                       [d, e, f + 0.5 * (d + e) - 0.5]], dtype=np.float64)
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height),
                          flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(v) for v in fill))


def rotate(image: np.ndarray, degrees: float, fill: Tuple[int, int, int]) -> np.ndarray:
    """``Image.rotate(degrees)``: counter-clockwise about the image centre, same size."""
    height, width = image.shape[:2]
    angle = -math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    centre_x, centre_y = width / 2.0, height / 2.0
    return pil_affine(image, (cos, sin, centre_x - cos * centre_x - sin * centre_y,
                              -sin, cos, centre_y + sin * centre_x - cos * centre_y), fill)


def shear_x(image, factor, fill):
    return pil_affine(image, (1, factor, 0, 0, 1, 0), fill)


def shear_y(image, factor, fill):
    return pil_affine(image, (1, 0, 0, factor, 1, 0), fill)


def translate_x_relative(image, fraction, fill):
    return pil_affine(image, (1, 0, fraction * image.shape[1], 0, 1, 0), fill)


def translate_y_relative(image, fraction, fill):
    return pil_affine(image, (1, 0, 0, 0, 1, fraction * image.shape[0]), fill)


# --------------------------------------------------------------------------- levels (timm)
def _negate_half_the_time(value: float) -> float:
    return -value if random.random() > 0.5 else value


def _enhance_increasing(level):  # [0.1, 1.9] around 1 (no change)
    return (1.0 + _negate_half_the_time(level / MAX_LEVEL * 0.9),)


#: name -> (operation, level -> arguments, geometric); levels as timm's ``LEVEL_TO_ARG``.
OPERATIONS: Dict[str, Tuple[Callable, Optional[Callable], bool]] = {
    'AutoContrast': (auto_contrast, None, False),
    'Equalize': (equalize, None, False),
    'Invert': (invert, None, False),
    'Rotate': (rotate, lambda level: (_negate_half_the_time(level / MAX_LEVEL * 30.0),), True),
    'PosterizeIncreasing': (posterize, lambda level: (4 - int(level / MAX_LEVEL * 4),), False),
    'SolarizeIncreasing': (solarize, lambda level: (256 - int(level / MAX_LEVEL * 256),), False),
    'SolarizeAdd': (solarize_add, lambda level: (int(level / MAX_LEVEL * 110),), False),
    'ColorIncreasing': (color, _enhance_increasing, False),
    'ContrastIncreasing': (contrast, _enhance_increasing, False),
    'BrightnessIncreasing': (brightness, _enhance_increasing, False),
    'SharpnessIncreasing': (sharpness, _enhance_increasing, False),
    'ShearX': (shear_x, lambda level: (_negate_half_the_time(level / MAX_LEVEL * 0.3),), True),
    'ShearY': (shear_y, lambda level: (_negate_half_the_time(level / MAX_LEVEL * 0.3),), True),
    'TranslateXRel': (translate_x_relative,
                      lambda level: (_negate_half_the_time(level / MAX_LEVEL * 0.45),), True),
    'TranslateYRel': (translate_y_relative,
                      lambda level: (_negate_half_the_time(level / MAX_LEVEL * 0.45),), True),
}


def apply_operation(name: str, image: np.ndarray, magnitude: float,
                    fill: Tuple[int, int, int]) -> np.ndarray:
    """Operation ``name`` at ``magnitude`` (of 10) on an (H, W, 3) uint8 RGB image."""
    if name not in OPERATIONS:
        raise KeyError(f'unknown RandAugment operation {name!r}; known: {sorted(OPERATIONS)}')
    operation, level_to_args, geometric = OPERATIONS[name]
    args = level_to_args(magnitude) if level_to_args is not None else ()
    return operation(image, *args, fill) if geometric else operation(image, *args)


@TRANSFORMS.register_module()
class RandAugment:
    """timm's RandAugment (``rand-m{magnitude}-mstd{magnitude_std}-inc1``) on ``results['img']``.

    Args:
        num_ops: operations per image, drawn with replacement (timm's default 2).
        magnitude: mean magnitude of 10 (9 in the recipe).
        magnitude_std: std of the Gaussian magnitude noise (0.5), clipped to [0, 10].
        prob: probability of applying each drawn operation (timm's 0.5).
        ops: operation names (default: the 15 increasing ones).
        fill_mean: mean in [0, 1] whose ``round(255 * mean)`` fills the geometric borders.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 9, magnitude_std: float = 0.5,
                 prob: float = 0.5, ops: Sequence[str] = INCREASING_OPS,
                 fill_mean: Sequence[float] = IMAGENET_MEAN):
        unknown = sorted(set(ops) - set(OPERATIONS))
        if unknown:
            raise KeyError(f'ops has unknown operations {unknown}; known: {sorted(OPERATIONS)}')
        if not 0 <= magnitude <= MAX_LEVEL:
            raise ValueError(f'magnitude must be in [0, {MAX_LEVEL}], got {magnitude}')
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.num_ops, self.magnitude, self.magnitude_std = int(num_ops), magnitude, magnitude_std
        self.prob, self.ops = prob, tuple(ops)
        self.fill = tuple(min(255, round(255 * value)) for value in fill_mean)

    def _magnitude(self) -> float:
        magnitude = self.magnitude
        if self.magnitude_std > 0:
            magnitude = random.gauss(magnitude, self.magnitude_std)
        return min(MAX_LEVEL, max(0.0, magnitude))

    def __call__(self, results: Dict) -> Dict:
        image = results['img']
        names: List[str] = list(np.random.choice(self.ops, self.num_ops, replace=True))
        for name in names:
            if self.prob < 1.0 and random.random() > self.prob:
                continue
            image = apply_operation(name, image, self._magnitude(), self.fill)
        results['img'] = np.ascontiguousarray(image)
        return results
