"""Point sampling with channel groups: every group of channels is read, by bilinear
interpolation, at its own continuous positions (DySample, Liu et al. ICCV 2023; SAPA-deform,
Lu et al., SAPA journal version).

Positions are in input-pixel units with component order ``(x, y)``: low-resolution pixel
``(row r, column c)`` covers ``[c, c + 1) x [r, r + 1)`` and its centre is ``(c + 0.5, r + 0.5)``
(the ``align_corners=False`` convention of ``F.grid_sample`` / ``F.interpolate``). Channel ``c``
of ``x`` belongs to group ``c // (C / G)``. Two treatments of the image border:

* ``'zeros'`` (SAPA-deform): every interpolation corner outside the image contributes zero;
* ``'border'`` (DySample): the position is first clamped to the span of the outer pixel centres,
  ``[0.5, W - 0.5] x [0.5, H - 0.5]``, so a sample never leaves the image.

:func:`subpixel_positions` turns per-high-resolution-pixel offsets, measured from the centre of the
low-resolution parent pixel ``(i // s, j // s)``, into the absolute positions both operators use.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

PADDING_MODES = ('zeros', 'border')


def check_point_sample_arguments(x: Tensor, positions: Tensor, groups: int,
                                 padding_mode: str) -> None:
    """Shape contract at the op boundary (names the offending argument)."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f'padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}')
    if x.dim() != 4:
        raise ValueError(f'x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}')
    if positions.dim() < 4 or positions.shape[-1] != 2:
        raise ValueError(f'positions must have shape (B, G, *points, 2) with at least one points '
                         f'dimension and (x, y) last, got shape {tuple(positions.shape)}')
    batch, channels = x.shape[:2]
    if positions.shape[0] != batch:
        raise ValueError(f'positions batch {positions.shape[0]} != x batch {batch}')
    if positions.shape[1] != groups:
        raise ValueError(f'positions has {positions.shape[1]} groups (dim 1) but groups={groups}')
    if groups < 1 or channels % groups:
        raise ValueError(f'x channels {channels} must be divisible by groups={groups}')
    if not (x.is_floating_point() and positions.is_floating_point()):
        raise TypeError(f'x and positions must be floating-point, got {x.dtype} and '
                        f'{positions.dtype}')
    if positions.device != x.device:
        raise ValueError(f'positions is on {positions.device} but x is on {x.device}')


def point_sample_reference(x: Tensor, positions: Tensor, groups: int,
                           padding_mode: str = 'zeros') -> Tensor:
    """Plain PyTorch grouped bilinear point sampling (the specification), via ``F.grid_sample``.

    Args:
        x: (B, C, H, W) feature to read.
        positions: (B, G, *points, 2) positions ``(x, y)`` in pixels of ``x`` (centres at
            ``k + 0.5``), any strides; the points dimensions are arbitrary (e.g. (oH, oW) or
            (P, oH, oW)).
        groups: G; group ``g`` reads channels ``[g * C / G, (g + 1) * C / G)``.
        padding_mode: ``'zeros'`` or ``'border'`` (see the module docstring).

    Returns:
        (B, G, C / G, *points) in the dtype of ``x``; the interpolation runs in the wider of the
        two dtypes (half-precision ``x`` is read at float32 positions).
    """
    check_point_sample_arguments(x, positions, groups, padding_mode)
    batch, channels, height, width = x.shape
    points = positions.shape[2:-1]
    dtype = torch.promote_types(x.dtype, positions.dtype)
    extent = torch.tensor([width, height], dtype=positions.dtype, device=positions.device)
    # Same arithmetic as the authors' code: grid = 2 * position / size - 1.
    grid = 2 * positions / extent - 1
    grid = grid.reshape(batch * groups, -1, points[-1], 2).to(dtype)
    features = x.reshape(batch * groups, channels // groups, height, width).to(dtype)
    sampled = F.grid_sample(features, grid, mode='bilinear', padding_mode=padding_mode,
                            align_corners=False)
    return sampled.reshape(batch, groups, channels // groups, *points).to(x.dtype)


def point_sample(x: Tensor, positions: Tensor, groups: int,
                 padding_mode: str = 'zeros') -> Tensor:
    """Grouped bilinear point sampling; see :func:`point_sample_reference` for shapes."""
    return point_sample_reference(x, positions, groups, padding_mode)


def pixel_centres(height: int, width: int, dtype: torch.dtype, device) -> Tensor:
    """Centres ``(c + 0.5, r + 0.5)`` of an H x W grid, shaped (H, 1, W, 1, 2) to broadcast over
    the sub-pixel dimensions of :func:`subpixel_positions`."""
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5
    centres = torch.stack(torch.broadcast_tensors(cols[None, :], rows[:, None]), dim=-1)
    return centres.view(height, 1, width, 1, 2)


def subpixel_positions(offsets: Tensor, scale_factor: int, size: Sequence[int]) -> Tensor:
    """Absolute positions of high-resolution pixels from offsets relative to their parent's centre.

    Args:
        offsets: (..., H, s or 1, W, s or 1, 2) offset ``(x, y)``, in low-resolution pixels, of
            high-resolution pixel ``(i * s + a, j * s + b)`` from the centre of low-resolution
            pixel ``(i, j)``; size-1 sub-pixel dimensions are shared by the whole s x s block.
        scale_factor: s.
        size: output size ``(oH, oW)`` with ``oH <= s * H`` and ``oW <= s * W``; the top-left
            window of the s x grid is kept.

    Returns:
        (..., oH, oW, 2) positions in low-resolution pixels (the layout :func:`point_sample`
        reads, made once here), in at least float32: half precision cannot place a point to
        better than a pixel once coordinates reach a few hundred.
    """
    if offsets.dim() < 5 or offsets.shape[-1] != 2:
        raise ValueError(f'offsets must have shape (..., H, s, W, s, 2), got '
                         f'{tuple(offsets.shape)}')
    height, width = offsets.shape[-5], offsets.shape[-3]
    out_height, out_width = size
    if out_height > scale_factor * height or out_width > scale_factor * width:
        raise ValueError(f'size={tuple(size)} exceeds scale_factor={scale_factor} x the offsets\' '
                         f'low-resolution grid {height}x{width}')
    dtype = torch.promote_types(offsets.dtype, torch.float32)
    positions = offsets.to(dtype) + pixel_centres(height, width, dtype, offsets.device)
    leading = positions.shape[:-5]
    positions = positions.expand(*leading, height, scale_factor, width, scale_factor, 2)
    positions = positions.reshape(*leading, height * scale_factor, width * scale_factor, 2)
    return positions[..., :out_height, :out_width, :]

