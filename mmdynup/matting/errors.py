"""The four Composition-1K matting errors of one image: SAD, MSE, Grad and Conn.

Definitions: the Deep Image Matting evaluation code (Xu et al., CVPR 2017; Ning Xu's MATLAB
``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m``,
``compute_connectivity_error.m`` and ``gaussgradient.m``, as shipped with the IndexNet / A2U
matting code), on the unknown region ``U = (trimap == 128)``. With p the prediction and g the
ground truth in [0, 1], both in single precision as MATLAB reads ``single(png) / 255``:

* ``SAD  = sum_U |p - g| / 1000``;
* ``MSE  = sum_U (p - g)^2 / |U|``;
* ``Grad = sum_U (|grad p~| - |grad g~|)^2 / 1000`` with ``x~`` the min-max normalised matte
  (``mat2gray``) and ``grad`` the first derivative of a Gaussian of sigma 1.4: a 9 x 9 kernel
  ``hx(i, j) = G(i) G'(j)`` (half size ``ceil(sigma sqrt(-2 ln(sqrt(2 pi) sigma 0.01)))`` = 4),
  L2-normalised, ``hy = hx^T``, convolved with replicated borders;
* ``Conn = sum_U |phi(p) - phi(g)| / 1000``, ``phi(x) = 1 - d * [d >= 0.15]``, ``d = x - l``,
  where ``l`` is, for each pixel, the last threshold ``t_{i-1}`` (of ``0, 0.1, ..., 1``) before
  the pixel left the largest 4-connected component of ``(p >= t_i) & (g >= t_i)`` (1 if it
  never left it). Ties of the largest component go to the first one in MATLAB's column-major
  order, as ``bwconncomp`` + ``max`` choose.

The division by 1000 of SAD, Grad and Conn is the evaluation script's (``test_withpic.m``), the
unit of every published table. Before anything, the prediction's known pixels are set from the
trimap (0 where it is 0, 1 where it is 255), as the authors' test scripts do before saving.
One deliberate difference: an image without unknown pixels has MSE 0 (MATLAB divides 0 by 0 and
reports NaN, which then poisons the average over a test set).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

#: Trimap values: background, unknown, foreground.
TRIMAP_VALUES = (0, 128, 255)
#: sigma of the derivative-of-Gaussian filters of the gradient error.
GRADIENT_SIGMA = 1.4
#: Threshold step of the connectivity error.
CONNECTIVITY_STEP = 0.1
#: The 0.15 rule: differences below it count as fully connected (phi = 1).
CONNECTIVITY_THETA = 0.15
#: SAD, Grad and Conn are reported in thousands.
ERROR_SCALE = 1000.0
#: 4-connectivity (bwconncomp(..., 4)).
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _as_array(name: str, value) -> np.ndarray:
    if hasattr(value, 'detach'):  # a torch tensor
        value = value.detach().cpu().numpy()
    elif isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f'{name} must be a numpy array of shape (H, W), got '
                        f'{type(value).__name__}')
    return value


def _check_matte(name: str, value) -> np.ndarray:
    matte = _as_array(name, value)
    if matte.ndim == 3 and matte.shape[-1] in (3, 4):
        raise ValueError(f'{name} has shape {matte.shape}: a {matte.shape[-1]}-channel image, '
                         f'but a matte has one channel of shape (H, W); pass {name}[..., 0]')
    if matte.ndim != 2:
        raise ValueError(f'{name} must have shape (H, W), got shape {matte.shape}')
    if matte.dtype.kind != 'f':
        raise TypeError(f'{name} has dtype {matte.dtype}; pass a float matte in [0, 1] (an 8-bit '
                        f'PNG matte divided by 255)')
    if not np.all(np.isfinite(matte)):
        raise ValueError(f'{name} holds NaN or infinite values; a matte lies in [0, 1]')
    low, high = float(matte.min()), float(matte.max())
    if low < 0 or high > 1:
        raise ValueError(f'{name} has values in [{low:g}, {high:g}], outside [0, 1]; clip it '
                         f'(np.clip({name}, 0, 1)) or divide an 8-bit matte by 255')
    return matte.astype(np.float32)


def check_composition_inputs(pred_alpha, gt_alpha,
                             trimap) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one image's inputs; return ``(pred, gt)`` as float32 (H, W) and the trimap as
    uint8 (H, W). Errors name the argument, what it held and the fix."""
    pred = _check_matte('pred_alpha', pred_alpha)
    gt = _check_matte('gt_alpha', gt_alpha)
    trimap = _as_array('trimap', trimap)
    if trimap.ndim == 3 and trimap.shape[-1] in (3, 4):
        raise ValueError(f'trimap has shape {trimap.shape}: a {trimap.shape[-1]}-channel image; '
                         f'pass trimap[..., 0]')
    if trimap.ndim != 2:
        raise ValueError(f'trimap must have shape (H, W), got shape {trimap.shape}')
    values = np.unique(trimap)
    wrong = values[~np.isin(values, TRIMAP_VALUES)]
    if wrong.size:
        shown = ', '.join(f'{v:g}' for v in wrong[:5].tolist()) + (', ...' if wrong.size > 5
                                                                    else '')
        raise ValueError(f'trimap has values {shown} besides 0 / 128 / 255 (background, '
                         f'unknown, foreground); a trimap read from an 8-bit PNG holds only '
                         f'those (a resized trimap needs nearest-neighbour interpolation)')
    for name, array in (('gt_alpha', gt), ('trimap', trimap)):
        if array.shape != pred.shape:
            raise ValueError(f'pred_alpha has shape {pred.shape} but {name} has shape '
                             f'{array.shape}; crop or pad the prediction to the image size')
    return pred, gt, trimap.astype(np.uint8)


def restore_known_regions(alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """``alpha`` with 0 where the trimap is 0 and 1 where it is 255 (a copy)."""
    alpha = alpha.copy()
    alpha[trimap == 0] = 0
    alpha[trimap == 255] = 1
    return alpha


def gaussian_factors(sigma: float = GRADIENT_SIGMA,
                     epsilon: float = 1e-2) -> Tuple[np.ndarray, np.ndarray, float]:
    """The 1-D factors of ``gaussgradient.m``'s kernel over offsets ``-h .. h``: the Gaussian
    ``G``, its derivative ``G'`` and the L2 norm of their outer product (the kernel's divisor)."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-offsets ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    derivative = -offsets * gauss / sigma ** 2
    return gauss, derivative, math.sqrt(float(np.sum(gauss ** 2) * np.sum(derivative ** 2)))


def gaussian_derivative_filters(sigma: float = GRADIENT_SIGMA,
                                epsilon: float = 1e-2) -> Tuple[np.ndarray, np.ndarray]:
    """``gaussgradient.m``'s kernels ``(hx, hy)``: ``hx[i, j] = G(i - h) G'(j - h)`` over a
    (2h + 1) x (2h + 1) grid, divided by its L2 norm; ``hy = hx^T``."""
    gauss, derivative, norm = gaussian_factors(sigma, epsilon)
    hx = gauss[:, None] * derivative[None, :] / norm
    return hx, hx.T.copy()


def normalise_min_max(matte: np.ndarray) -> np.ndarray:
    """``mat2gray``: (x - min) / (max - min) in float64; a constant matte maps to zeros (its
    gradient is zero either way)."""
    matte = matte.astype(np.float64)
    low, high = matte.min(), matte.max()
    if high == low:
        return np.zeros_like(matte)
    return (matte - low) / (high - low)


def gradient_magnitude(matte: np.ndarray, sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    """``sqrt(gx^2 + gy^2)`` of ``gaussgradient(mat2gray(matte), sigma)``: (H, W) float64.

    The 2-D convolutions with ``hx`` / ``hy`` and replicated borders run as two 1-D passes each
    (the kernels are outer products and replication clamps each axis on its own): the same sums
    with 2 x 9 instead of 81 multiply-adds a pixel."""
    gauss, derivative, norm = gaussian_factors(sigma)
    normalised = normalise_min_max(matte)

    def separable(along_rows: np.ndarray, along_columns: np.ndarray) -> np.ndarray:
        # mode='nearest' is MATLAB's 'replicate'
        rows = ndimage.convolve1d(normalised, along_rows, axis=0, mode='nearest')
        return ndimage.convolve1d(rows, along_columns, axis=1, mode='nearest') / norm

    gx, gy = separable(gauss, derivative), separable(derivative, gauss)
    return np.sqrt(gx ** 2 + gy ** 2)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean (H, W) mask (ties: the component whose
    first pixel comes first in column-major order, as MATLAB's ``bwconncomp`` + ``max``); an
    all-False mask when it is empty."""
    labels, count = ndimage.label(mask, structure=FOUR_CONNECTED)
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())[1:]
    largest = np.flatnonzero(sizes == sizes.max()) + 1
    if largest.size > 1:
        column_major = labels.T.ravel()  # labels in MATLAB's linear-index order
        first = {label: int(np.argmax(column_major == label)) for label in largest}
        chosen = min(largest, key=first.get)
    else:
        chosen = largest[0]
    return labels == chosen


def connectivity_levels(pred: np.ndarray, gt: np.ndarray,
                        step: float = CONNECTIVITY_STEP) -> np.ndarray:
    """``l_map`` of ``compute_connectivity_error.m``: per pixel, the threshold before the one at
    which it first falls outside the largest common component; 1 if it never does. float32."""
    count = int(round(1 / step)) + 1
    thresholds = (np.arange(count, dtype=np.float64) * step).astype(np.float32)
    levels = np.full(pred.shape, -1, dtype=np.float32)
    for index in range(1, count):
        omega = largest_component((pred >= thresholds[index]) & (gt >= thresholds[index]))
        if not omega.any():
            continue  # MATLAB skips a threshold without components (and every later one)
        levels[(levels == -1) & ~omega] = thresholds[index - 1]
    levels[levels == -1] = 1
    return levels


def composition_errors(pred_alpha, gt_alpha, trimap) -> Dict[str, float]:
    """SAD, MSE, Grad and Conn of one image (module docstring: the definitions).

    Args:
        pred_alpha: predicted matte, float (H, W) in [0, 1]; its known pixels are first set
            from ``trimap``.
        gt_alpha: ground-truth matte, float (H, W) in [0, 1].
        trimap: uint8 (H, W) with values 0 (background), 128 (unknown), 255 (foreground).

    Returns:
        ``dict(SAD=..., MSE=..., Grad=..., Conn=...)`` as Python floats; SAD, Grad and Conn in
        thousands, MSE the mean over the unknown pixels.

    Example:
        >>> import numpy as np
        >>> gt = np.array([[0.0, 0.5], [1.0, 0.25]])
        >>> pred = np.array([[0.0, 0.75], [1.0, 0.25]])
        >>> trimap = np.array([[0, 128], [255, 128]], dtype=np.uint8)
        >>> composition_errors(pred, gt, trimap)['SAD']
        0.00025
    """
    pred, gt, trimap = check_composition_inputs(pred_alpha, gt_alpha, trimap)
    pred = restore_known_regions(pred, trimap)
    unknown = trimap == 128
    difference = (pred - gt).astype(np.float64)  # float32 difference, as MATLAB's single
    sad = float(np.abs(difference)[unknown].sum()) / ERROR_SCALE
    count = int(unknown.sum())
    mse = float((difference[unknown] ** 2).sum()) / count if count else 0.0
    gradient_error = (gradient_magnitude(pred).astype(np.float32)
                      - gradient_magnitude(gt).astype(np.float32)).astype(np.float64) ** 2
    grad = float(gradient_error[unknown].sum()) / ERROR_SCALE
    levels = connectivity_levels(pred, gt)
    pred_phi, gt_phi = (1 - d * (d >= np.float32(CONNECTIVITY_THETA))
                        for d in (pred - levels, gt - levels))
    conn = float(np.abs(pred_phi - gt_phi).astype(np.float64)[unknown].sum()) / ERROR_SCALE
    return dict(SAD=sad, MSE=mse, Grad=grad, Conn=conn)
