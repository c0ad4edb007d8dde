"""Downsampling reassembly: each low-resolution pixel is a k2 x k2 combination (k2 = 2s, even) of
the high-resolution window at its 2 x 2 block (A2U, Dai et al., CVPR 2021: the authors'
``bidownsample_naive`` CUDA op, dongdong93/a2u_matting ``scripts/Biupdownsample``).

``out[b, c, p, q] = sum_{dy, dx < 2s} kernels[b, g(c), dy * 2s + dx, p, q]
                    * x[b, c, 2p + dy - (s - 1), 2q + dx - (s - 1)]``

with zeros outside ``x`` and channel ``c`` in group ``g(c) = c // (C / G)``. The window is not
centred on the block: it reaches one pixel further right and down (rows 2p - s + 1 .. 2p + s).
Output size: ``ceil(H / 2) x ceil(W / 2)``.

Implementations:

* :func:`downsample_reassemble_reference` - the specification: zero-pad, unfold the 2s x 2s
  windows with stride 2, einsum (materialises (B, C, 4 s^2, H/2, W/2), s^2 times the input).
* :func:`downsample_reassemble` - memory-lean: for odd s the window splits into the four
  sub-pixel phases of ``x``, each read by a *centred* s x s window
  (``x[2p + dy - (s-1)] = x_a[p + m]`` with ``a = dy % 2``... see below), so the op is one
  scale-1 :func:`~mmdynup.ops.reassembly.reassemble` of the four phase maps stacked as groups
  (tiled / Triton fast paths, the reference while exporting), summed over the phases.

Phase split (s odd): write ``dy - (s - 1) = 2 m + a`` with ``a`` in {0, 1}; then
``m = (dy - a) / 2 - (s - 1) / 2`` runs over the centred range ``-(s-1)/2 .. (s-1)/2`` and the
taps of phase ``a`` are ``dy = a, a + 2, .., a + 2 (s - 1)``: the s x s sub-kernel
``kernels[..., a::2, b::2]`` applied to ``x[..., a::2, b::2]``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .reassembly import reassemble


def check_downsample_arguments(x: Tensor, kernels: Tensor, kernel_size: int) -> None:
    """Shape contract: x (B, C, H, W), kernels (B, G, k2 * k2, ceil(H/2), ceil(W/2)), k2 even."""
    if not isinstance(x, Tensor) or not isinstance(kernels, Tensor):
        raise TypeError(f'x and kernels must be tensors, got {type(x).__name__} and '
                        f'{type(kernels).__name__}')
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 2 \
            or kernel_size % 2:
        raise ValueError(f'kernel_size must be an even integer >= 2 (the 2s x 2s window of a '
                         f'2 x downsampling), got {kernel_size!r}')
    if x.dim() != 4 or kernels.dim() != 5:
        raise ValueError(f'downsample_reassemble expects x (B, C, H, W) and kernels '
                         f'(B, G, k*k, H/2, W/2), got x {tuple(x.shape)} and kernels '
                         f'{tuple(kernels.shape)}')
    batch, channels, height, width = x.shape
    out_size = ((height + 1) // 2, (width + 1) // 2)
    if kernels.shape[0] != batch or kernels.shape[2] != kernel_size ** 2 \
            or tuple(kernels.shape[-2:]) != out_size:
        raise ValueError(f'kernels {tuple(kernels.shape)} do not fit x {tuple(x.shape)} with '
                         f'kernel_size={kernel_size}: expected ({batch}, G, {kernel_size ** 2}, '
                         f'{out_size[0]}, {out_size[1]})')
    if channels % kernels.shape[1]:
        raise ValueError(f'x channels {channels} must be divisible by kernel groups '
                         f'{kernels.shape[1]}')


def downsample_reassemble_reference(x: Tensor, kernels: Tensor, kernel_size: int) -> Tensor:
    """Plain PyTorch downsampling reassembly (the specification; unfolds the windows).

    Args:
        x: (B, C, H, W) high-resolution feature.
        kernels: (B, G, k2 * k2, ceil(H/2), ceil(W/2)), tap ``dy * k2 + dx``.
        kernel_size: k2 = 2s (even).

    Returns:
        (B, C, ceil(H/2), ceil(W/2)).
    """
    check_downsample_arguments(x, kernels, kernel_size)
    batch, channels, height, width = x.shape
    _, groups, taps, out_h, out_w = kernels.shape
    before, after = kernel_size // 2 - 1, kernel_size // 2
    padded = F.pad(x, (before, after + 2 * out_w - width, before, after + 2 * out_h - height))
    windows = F.unfold(padded, kernel_size, stride=2)  # (B, C * k2 * k2, oH * oW)
    windows = windows.view(batch, groups, channels // groups, taps, out_h, out_w)
    out = torch.einsum('bgctij,bgtij->bgcij', windows, kernels)
    return out.reshape(batch, channels, out_h, out_w)


def downsample_reassemble(x: Tensor, kernels: Tensor, kernel_size: int,
                          impl: Optional[str] = None) -> Tensor:
    """Downsampling reassembly through the reassembly fast paths; shapes as
    :func:`downsample_reassemble_reference`. ``kernel_size`` = 2s with s odd (A2U's released
    settings: s = 1, 3); other even sizes use the reference.

    Args:
        impl: passed to :func:`~mmdynup.ops.reassembly.reassemble` (``'reference'`` there
            keeps its unfold; this function's own reference is
            :func:`downsample_reassemble_reference`).
    """
    check_downsample_arguments(x, kernels, kernel_size)
    phase_kernel = kernel_size // 2
    if phase_kernel % 2 == 0:  # the phase windows would not be centred
        return downsample_reassemble_reference(x, kernels, kernel_size)
    batch, channels, height, width = x.shape
    _, groups, _, out_h, out_w = kernels.shape
    # (B, C, 2 oH, 2 oW) -> (B, G, C/G, oH, 2, oW, 2) -> phases as groups (B, G * 4 * C/G, oH, oW)
    even = F.pad(x, (0, 2 * out_w - width, 0, 2 * out_h - height))
    phases = even.view(batch, groups, channels // groups, out_h, 2, out_w, 2)
    phases = phases.permute(0, 1, 4, 6, 2, 3, 5).reshape(batch, groups * 4 * (channels // groups),
                                                         out_h, out_w)
    # (B, G, 2s * 2s, oH, oW) -> taps (my, a, mx, b) -> (B, G * 4, s * s, oH, oW)
    sub_kernels = kernels.view(batch, groups, phase_kernel, 2, phase_kernel, 2, out_h, out_w)
    sub_kernels = sub_kernels.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(
        batch, groups * 4, phase_kernel * phase_kernel, out_h, out_w)
    out = reassemble(phases, sub_kernels, phase_kernel, 1, impl=impl)
    return out.view(batch, groups, 4, channels // groups, out_h, out_w).sum(dim=2).reshape(
        batch, channels, out_h, out_w)
