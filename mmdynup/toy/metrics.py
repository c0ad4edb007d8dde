"""Metrics of the toy study: PSNR, SSIM and MAE for reconstruction, boundary IoU for segmentation.

* PSNR ``10 log10(range^2 / MSE)`` and MAE per image, then averaged over the images;
* SSIM (Wang et al., IEEE TIP 2004): 11 x 11 Gaussian window with sigma 1.5, ``K1 = 0.01``,
  ``K2 = 0.03``, population statistics, averaged over the window positions that lie inside the
  image (no padding) and over channels: the settings of the paper, and of scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``;
* boundary IoU (Cheng et al., CVPR 2021): the IoU of the pixels within ``width`` pixels of each
  class mask's contour in the prediction and in the ground truth, per class over the whole set,
  then averaged over the classes that occur; the image border counts as contour, as in the
  paper's reference code (zero padding before the erosion).

Shapes: images (B, C, H, W) with values in ``[0, data_range]``; label maps (H, W) integers.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torch import Tensor

from ..checks import check_positive_int

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _check_pair(prediction: Tensor, target: Tensor) -> None:
    if prediction.shape != target.shape or prediction.dim() != 4:
        raise ValueError(f'prediction and target must be (B, C, H, W) of the same shape, got '
                         f'{tuple(prediction.shape)} and {tuple(target.shape)}')


def mean_absolute_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-image mean |prediction - target|: (B, C, H, W) x 2 -> (B,)."""
    _check_pair(prediction, target)
    return (prediction - target).abs().flatten(1).mean(1)


def psnr(prediction: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image peak signal-to-noise ratio in dB: (B, C, H, W) x 2 -> (B,); ``inf`` where the
    two images are equal."""
    _check_pair(prediction, target)
    mse = (prediction.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / mse)).to(prediction.dtype)


def _gaussian_window(size: int, sigma: float) -> Tensor:
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    profile = profile / profile.sum()
    return profile[:, None] * profile[None, :]


def ssim(prediction: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image structural similarity (module docstring): (B, C, H, W) x 2 -> (B,), in float64
    arithmetic; images need H, W >= 11."""
    _check_pair(prediction, target)
    if min(prediction.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f'ssim needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels '
                         f'(the Gaussian window), got {tuple(prediction.shape[-2:])}')
    channels = prediction.shape[1]
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(prediction.device)
    window = window.expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    x, y = prediction.double(), target.double()

    def local_mean(image: Tensor) -> Tensor:
        return F.conv2d(image, window, groups=channels)

    mean_x, mean_y = local_mean(x), local_mean(y)
    variance_x = local_mean(x * x) - mean_x ** 2
    variance_y = local_mean(y * y) - mean_y ** 2
    covariance = local_mean(x * y) - mean_x * mean_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / \
        ((mean_x ** 2 + mean_y ** 2 + c1) * (variance_x + variance_y + c2))
    return index.flatten(1).mean(1).to(prediction.dtype)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of the boolean ``mask`` (H, W) within ``width`` pixels of its contour: (H, W) bool."""
    mask = mask.astype(np.uint8)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    padded = cv2.copyMakeBorder(mask, width, width, width, width, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, kernel)[width:-width, width:-width]
    return mask.astype(bool) & ~eroded.astype(bool)


def boundary_counts(prediction: np.ndarray, truth: np.ndarray, num_classes: int, width: int,
                    ignore_index: int = 255) -> np.ndarray:
    """Per-class boundary-band intersection and union of one (H, W) label-map pair: (2, K)."""
    valid = truth != ignore_index
    counts = np.zeros((2, num_classes), np.int64)
    for index in range(num_classes):
        predicted = boundary_band((prediction == index) & valid, width)
        true = boundary_band((truth == index) & valid, width)
        counts[0, index] = (predicted & true).sum()
        counts[1, index] = (predicted | true).sum()
    return counts


class BoundaryIoUMetric(BaseMetric):
    """Boundary IoU of a semantic segmentation (module docstring), in percent, as ``bIoU``.

    Reads mmseg's ``SegDataSample`` fields ``pred_sem_seg`` and ``gt_sem_seg`` (as IoUMetric does).

    Args:
        num_classes: K, the label values 0 .. K-1 (``ignore_index`` is skipped).
        width: band width d in pixels (Cheng et al.: 2 % of the image diagonal).
        ignore_index: label of pixels that count for neither.
        prefix: metric name prefix (default ``'boundary'``: ``boundary/bIoU``).
    """

    default_prefix = 'boundary'

    def __init__(self, num_classes: int, width: int = 2, ignore_index: int = 255,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = check_positive_int('num_classes', num_classes)
        self.width = check_positive_int('width', width)
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            prediction = sample['pred_sem_seg']['data'].squeeze(0).cpu().numpy()
            truth = sample['gt_sem_seg']['data'].squeeze(0).cpu().numpy()
            self.results.append(boundary_counts(prediction, truth, self.num_classes, self.width,
                                                self.ignore_index))

    def compute_metrics(self, results: List[np.ndarray]) -> Dict[str, float]:
        intersection, union = np.sum(results, axis=0)
        present = union > 0
        return {'bIoU': float(100 * np.mean(intersection[present] / union[present]))}


class ReconstructionMetric(BaseMetric):
    """PSNR (dB), SSIM and MAE of reconstructed images, averaged over the images.

    Reads the dicts that :class:`~mmdynup.toy.reconstruction.ToyReconstructor` returns in
    ``predict`` mode: ``prediction`` and ``target``, (C, H, W) in ``[0, data_range]``.
    """

    default_prefix = 'reconstruction'

    def __init__(self, data_range: float = 1.0, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.data_range = data_range

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        prediction = torch.stack([sample['prediction'] for sample in data_samples]).cpu()
        target = torch.stack([sample['target'] for sample in data_samples]).cpu()
        prediction = prediction.clamp(0, self.data_range)
        for values in zip(psnr(prediction, target, self.data_range).tolist(),
                          ssim(prediction, target, self.data_range).tolist(),
                          mean_absolute_error(prediction, target).tolist()):
            self.results.append(values)

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        psnr_values, ssim_values, mae_values = np.array(results, np.float64).T
        return {'PSNR': float(psnr_values.mean()), 'SSIM': float(ssim_values.mean()),
                'MAE': float(mae_values.mean())}
