"""Neighbour cosine similarity: how much every pixel of a feature map resembles each of its
neighbours in a dilated k x k window (FreqFusion's "direction features", Chen et al., TPAMI 2024).

``out[b, n, i, j] = cos(x[b, :, i, j], x_pad[b, :, i + d * (u - k // 2), j + d * (v - k // 2)])``

for the k * k - 1 window positions (u, v) other than the centre, row-major (n counts them with
the centre skipped), ``x_pad`` zero-padded, so a neighbour outside the map has similarity 0. The
cosine is ``F.cosine_similarity``'s: each vector is divided by ``max(||.||, eps)`` before the dot
product over channels.

* :func:`neighbour_similarity_reference` - the specification: unfold the window, then
  ``F.cosine_similarity``. It materialises a (B, C, k*k, H, W) tensor.
* :func:`neighbour_similarity` - memory-lean: normalise once, zero-pad once, then one shifted
  product per neighbour, reduced over channels at once (a (B, C, H, W) temporary at a time).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``F.cosine_similarity``'s default.
COSINE_EPS = 1e-8


def check_neighbour_similarity_arguments(x: Tensor, kernel_size: int, dilation: int) -> None:
    """Shape contract at the op boundary (names the offending argument)."""
    for name, value in (('kernel_size', kernel_size), ('dilation', dilation)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd (the window is centred on the pixel), got '
                         f'{kernel_size}')
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'x must be a floating-point (B, C, H, W) tensor, got {shape}')


def neighbour_similarity_reference(x: Tensor, kernel_size: int = 3, dilation: int = 1,
                                   eps: float = COSINE_EPS) -> Tensor:
    """Cosine similarity of every pixel with its k * k - 1 dilated neighbours (the specification).

    Args:
        x: (B, C, H, W).
        kernel_size: k (odd).
        dilation: d, the spacing of the window taps.
        eps: the norm floor of ``F.cosine_similarity``.

    Returns:
        (B, k * k - 1, H, W), neighbours row-major with the centre left out.
    """
    check_neighbour_similarity_arguments(x, kernel_size, dilation)
    batch, channels, height, width = x.shape
    taps = kernel_size * kernel_size
    windows = F.unfold(x, kernel_size, dilation=dilation, padding=kernel_size // 2 * dilation)
    windows = windows.view(batch, channels, taps, height, width)
    centre = taps // 2
    similarity = F.cosine_similarity(windows[:, :, centre:centre + 1], windows, dim=1, eps=eps)
    return torch.cat([similarity[:, :centre], similarity[:, centre + 1:]], dim=1)


def neighbour_similarity(x: Tensor, kernel_size: int = 3, dilation: int = 1,
                         eps: float = COSINE_EPS) -> Tensor:
    """Memory-lean :func:`neighbour_similarity_reference` (same arguments, same result)."""
    check_neighbour_similarity_arguments(x, kernel_size, dilation)
    height, width = x.shape[-2:]
    radius = kernel_size // 2 * dilation
    unit = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(eps)
    padded = F.pad(unit, (radius, radius, radius, radius))
    similarities = []
    for u in range(kernel_size):
        for v in range(kernel_size):
            if u == v == kernel_size // 2:
                continue
            top, left = u * dilation, v * dilation
            neighbour = padded[:, :, top:top + height, left:left + width]
            similarities.append((unit * neighbour).sum(dim=1))
    return torch.stack(similarities, dim=1)
