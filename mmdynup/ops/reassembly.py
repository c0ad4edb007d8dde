"""Reassembly: each high-resolution pixel is a normalised k x k combination of the low-resolution
window around its parent pixel (CARAFE, Wang et al. ICCV 2019; reused by FADE and SAPA).

``out[b, c, i, j] = sum_{u, v} kernels[b, g(c), u * k + v, i, j] * x_pad[b, c, i // s + u, j // s + v]``

with ``x_pad`` zero-padded by ``k // 2`` and channel ``c`` in group ``g(c) = c // (C / G)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_reassembly_arguments(x: Tensor, kernels: Tensor, kernel_size: int,
                               scale_factor: int) -> None:
    """Shape contract at the op boundary (names the offending argument)."""
    if x.dim() != 4 or kernels.dim() != 5:
        raise ValueError(f'reassemble expects x (B, C, H, W) and kernels (B, G, k*k, oH, oW), got '
                         f'x {tuple(x.shape)} and kernels {tuple(kernels.shape)}')
    batch, channels, height, width = x.shape
    kb, groups, taps, out_h, out_w = kernels.shape
    if kb != batch:
        raise ValueError(f'kernels batch {kb} != x batch {batch}')
    if taps != kernel_size * kernel_size:
        raise ValueError(f'kernels have {taps} taps but kernel_size={kernel_size} needs '
                         f'{kernel_size * kernel_size}')
    if channels % groups:
        raise ValueError(f'x channels {channels} must be divisible by kernel groups {groups}')
    if out_h > scale_factor * height or out_w > scale_factor * width:
        raise ValueError(f'kernels size {out_h}x{out_w} exceeds scale_factor={scale_factor} x '
                         f'the input {height}x{width}')


def parent_index(out_len: int, scale_factor: int, device) -> Tensor:
    """Low-resolution parent of each high-resolution coordinate: ``i // s``."""
    return torch.div(torch.arange(out_len, device=device), scale_factor, rounding_mode='floor')


def reassemble_reference(x: Tensor, kernels: Tensor, kernel_size: int,
                         scale_factor: int) -> Tensor:
    """Plain PyTorch reassembly (the specification; materialises the k*k unfold).

    Args:
        x: (B, C, H, W) low-resolution feature.
        kernels: (B, G, k*k, oH, oW) normalised kernels, oH <= s*H, oW <= s*W.
        kernel_size: k (odd).
        scale_factor: s.

    Returns:
        (B, C, oH, oW).
    """
    check_reassembly_arguments(x, kernels, kernel_size, scale_factor)
    batch, channels, height, width = x.shape
    _, groups, taps, out_h, out_w = kernels.shape
    windows = F.unfold(x, kernel_size, padding=kernel_size // 2)
    windows = windows.view(batch, groups, channels // groups, taps, height, width)
    rows = parent_index(out_h, scale_factor, x.device)
    cols = parent_index(out_w, scale_factor, x.device)
    windows = windows[..., rows, :][..., cols]  # (B, G, C/G, k*k, oH, oW)
    out = torch.einsum('bgctij,bgtij->bgcij', windows, kernels)
    return out.reshape(batch, channels, out_h, out_w)


def reassemble(x: Tensor, kernels: Tensor, kernel_size: int, scale_factor: int) -> Tensor:
    """Reassemble ``x`` with per-pixel ``kernels``; see :func:`reassemble_reference` for shapes."""
    return reassemble_reference(x, kernels, kernel_size, scale_factor)
