"""Local filtering: every pixel is a normalised k x k combination of its own neighbourhood, at
the same resolution (the content-aware filter of FRFU; FreqFusion's high-pass filter).

``out[b, c, i, j] = sum_{u, v} kernels[b, g(c), u * k + v, i, j] * x_pad[b, c, i + u, j + v]``

with ``x_pad`` zero-padded by ``k // 2`` and channel ``c`` in group ``g(c) = c // (C / G)``: the
reassembly of :mod:`mmdynup.ops.reassembly` at scale 1, whose :func:`reassemble_reference` is the
specification here too.

The tiled reassembly path is built for s > 1, where one low-resolution window serves s^2 output
pixels as a (s^2, k^2) @ (k^2, C/G) product; at s = 1 that product degenerates into one
matrix-vector product per pixel and ran 18x bilinear interpolation (2 x 256 x 128 x 128, forward
+ backward). The fast path here (:class:`LocalFilter`) instead loops over the k^2 taps: each tap
is one fused multiply-add of a shifted view of x with that tap's kernel plane, broadcast over the
channels of its group, in place and without padding (each tap's valid rectangle is sliced).
Rows are processed in tiles of :data:`TILE_ELEMENTS`, which bounds the temporaries of the
kernel gradient. The backward recomputes the same shifted views: the
input gradient is the same loop with the shift reversed, each tap's kernel gradient a product
summed over the group's channels. Nothing but the inputs is saved; NCHW in, NCHW out.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

from .dispatch import autocast_disabled, autocast_inputs, resolve_implementation
from .reassembly import (GPU_TILE_ELEMENTS, check_reassembly_arguments, compute_dtype,
                         reassemble, reassemble_reference)

#: Elements (B x C x rows x oW) of one row tile on the CPU. Unlike the reassembly's GEMM tiles,
#: the taps are memory-bound element-wise passes that torch parallelises over the tile: small
#: (L2-sized) tiles were 2-6x slower (2^14 .. 2^18 elements, 2 x 256 x 128 x 128, 2 threads), and
#: 2^22 was as fast as one tile over the whole map while bounding the kernel gradient's temporary.
TILE_ELEMENTS = 1 << 22

#: A tap's valid rectangle: ``(t, out_rows, out_cols, in_rows, in_cols)`` as slices.
Tap = Tuple[int, slice, slice, slice, slice]


def local_filter_reference(x: Tensor, kernels: Tensor, kernel_size: int) -> Tensor:
    """Plain PyTorch local filtering (the specification; materialises the k*k unfold).

    Args:
        x: (B, C, H, W) feature.
        kernels: (B, G, k*k, oH, oW) normalised kernels, oH <= H, oW <= W (the top-left window
            of the output is computed).
        kernel_size: k (odd).

    Returns:
        (B, C, oH, oW).
    """
    return reassemble_reference(x, kernels, kernel_size, 1)


def tile_rows(x: Tensor, out_width: int) -> int:
    """Output rows per tile: about :data:`TILE_ELEMENTS` (CPU; one tile on GPUs)."""
    budget = TILE_ELEMENTS if x.device.type == 'cpu' else GPU_TILE_ELEMENTS
    return max(1, budget // (x.shape[0] * x.shape[1] * out_width))


def taps(kernel_size: int, rows: Tuple[int, int], height: int, width: int,
         out_width: int) -> Iterator[Tap]:
    """The taps of output rows ``[rows[0], rows[1])`` with their valid rectangles: output pixel
    (i, j) reads input pixel (i + du, j + dv); taps whose rectangle is empty are skipped."""
    radius = kernel_size // 2
    start, stop = rows
    for u in range(kernel_size):
        du = u - radius
        i0, i1 = max(start, -du), min(stop, height - du)
        for v in range(kernel_size):
            dv = v - radius
            j0, j1 = max(0, -dv), min(out_width, width - dv)
            if i0 < i1 and j0 < j1:
                yield (u * kernel_size + v, slice(i0, i1), slice(j0, j1),
                       slice(i0 + du, i1 + du), slice(j0 + dv, j1 + dv))


def row_tiles(x: Tensor, out_height: int, out_width: int) -> Iterator[Tuple[int, int]]:
    step = tile_rows(x, out_width)
    for start in range(0, out_height, step):
        yield start, min(out_height, start + step)


def grouped(tensor: Tensor, groups: int) -> Tensor:
    """(B, C, H, W) -> (B, G, C/G, H, W) view."""
    return tensor.unflatten(1, (groups, tensor.shape[1] // groups))


def tap_filter_forward(x: Tensor, kernels: Tensor, kernel_size: int) -> Tensor:
    """The forward of :class:`LocalFilter`: k*k in-place multiply-adds per row tile."""
    batch, channels, height, width = x.shape
    groups, out_height, out_width = kernels.shape[1], *kernels.shape[-2:]
    dtype = compute_dtype(x.dtype)
    source, weights = grouped(x, groups).to(dtype), kernels.to(dtype)
    out = source.new_zeros(batch, groups, channels // groups, out_height, out_width)
    for rows in row_tiles(x, out_height, out_width):
        for t, out_i, out_j, in_i, in_j in taps(kernel_size, rows, height, width, out_width):
            out[..., out_i, out_j].addcmul_(source[..., in_i, in_j],
                                            weights[:, :, t:t + 1, out_i, out_j])
    return out.flatten(1, 2).to(x.dtype)


def tap_filter_backward(grad_out: Tensor, x: Tensor, kernels: Tensor, kernel_size: int,
                        need_x: bool, need_kernels: bool
                        ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`tap_filter_forward` w.r.t. x and kernels (each only if needed)."""
    batch, channels, height, width = x.shape
    groups, out_height, out_width = kernels.shape[1], *kernels.shape[-2:]
    dtype = compute_dtype(x.dtype)
    grad = grouped(grad_out, groups).to(dtype)
    source, weights = grouped(x, groups).to(dtype), kernels.to(dtype)
    grad_x = source.new_zeros(source.shape) if need_x else None
    grad_kernels = weights.new_zeros(weights.shape) if need_kernels else None
    for rows in row_tiles(x, out_height, out_width):
        for t, out_i, out_j, in_i, in_j in taps(kernel_size, rows, height, width, out_width):
            tile = grad[..., out_i, out_j]
            if need_x:
                grad_x[..., in_i, in_j].addcmul_(tile, weights[:, :, t:t + 1, out_i, out_j])
            if need_kernels:
                torch.sum(tile * source[..., in_i, in_j], dim=2,
                          out=grad_kernels[:, :, t, out_i, out_j])
    if grad_x is not None:
        grad_x = grad_x.flatten(1, 2).to(x.dtype)
    if grad_kernels is not None:
        grad_kernels = grad_kernels.to(kernels.dtype)
    return grad_x, grad_kernels


class LocalFilter(torch.autograd.Function):
    """Local filtering by taps (:func:`tap_filter_forward`); the backward recomputes the shifted
    views from the saved inputs. Inputs as :func:`local_filter_reference`."""

    @staticmethod
    def forward(ctx, x: Tensor, kernels: Tensor, kernel_size: int) -> Tensor:
        ctx.save_for_backward(x, kernels)
        ctx.kernel_size = kernel_size
        with autocast_disabled(x.device.type):
            return tap_filter_forward(x, kernels, kernel_size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, kernels = ctx.saved_tensors
        with autocast_disabled(x.device.type):
            grad_x, grad_kernels = tap_filter_backward(
                grad_out, x, kernels, ctx.kernel_size, ctx.needs_input_grad[0],
                ctx.needs_input_grad[1])
        return grad_x, grad_kernels, None


def local_filter(x: Tensor, kernels: Tensor, kernel_size: int,
                 impl: Optional[str] = None) -> Tensor:
    """Filter ``x`` with per-pixel ``kernels``; see :func:`local_filter_reference` for shapes.

    Args:
        impl: as :func:`mmdynup.ops.reassembly.reassemble`: ``'reference'``; ``'tiled'`` (the tap
            loop here); ``'triton'`` (the reassembly Triton kernels at scale 1); None / ``'auto'``
            follow :func:`mmdynup.ops.dispatch.use_implementation`.
    """
    check_reassembly_arguments(x, kernels, kernel_size, 1)
    chosen = resolve_implementation(impl, x, kernels)
    if chosen == 'reference':
        return local_filter_reference(x, kernels, kernel_size)
    if chosen == 'triton':
        return reassemble(x, kernels, kernel_size, 1, impl='triton')
    x, kernels = autocast_inputs(x, kernels)
    return LocalFilter.apply(x, kernels, kernel_size)
