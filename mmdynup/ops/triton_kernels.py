"""Triton GPU kernels for reassembly (CARAFE, Wang et al. ICCV 2019; FADE; SAPA) and, through
the same three primitives, SAPA's local similarity (:mod:`mmdynup.ops.similarity_kernels`).

``out[b, c, i, j] = sum_t kernels[b, g, t, i, j] * x_pad[b, c, i // s + u, j // s + v]``
(t = u * k + v, ``x_pad`` zero-padded by k // 2; the specification is
:func:`mmdynup.ops.reassembly.reassemble_reference`).

Kernels (NCHW, no layout copies; sums in float32, float64 for float64 inputs; measured on an
H200 in ``tools/gpu_check.py``):

* :func:`reassemble_forward` - one program per (pixel block, channel block, batch x group); the
  k*k taps are unrolled, each a masked gather of the input and a weight per pixel.
* :func:`reassemble_kernel_grad` - ``grad_kernels[b, g, t, i, j] = sum_{c in g} grad[b, c, i, j]
  * x_pad[b, c, i // s + u, j // s + v]``: one program per (pixel block, batch x group), a
  channel loop per tap. It is also SAPA's similarity (query as ``grad``, key as ``x``).
* :func:`reassemble_input_grad` - the input gradient in gather form (each low-resolution pixel
  sums the k*k*s*s output pixels that read it), so no atomics and a deterministic result.

Everything here imports ``triton``; :mod:`mmdynup.ops.dispatch` imports this module only when the
Triton path is chosen. With ``TRITON_INTERPRET=1`` (set before this module is imported) the same
kernels run on CPU tensors through Triton's interpreter, which is how the tests cover them.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

#: Output (or low-resolution) pixels per program and channels per program.
BLOCK_PIXELS = 64
BLOCK_CHANNELS = 32


@triton.jit
def _reassemble_forward_kernel(x_ptr, kernels_ptr, out_ptr, channels, height, width, out_h,
                               out_w, groups, group_channels,
                               KERNEL_SIZE: tl.constexpr, SCALE: tl.constexpr,
                               ACC_DTYPE: tl.constexpr, BLOCK_C: tl.constexpr,
                               BLOCK_P: tl.constexpr):
    pixel_block, channel_block, batch_group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, group = batch_group // groups, batch_group % groups
    out_pixels = out_h * out_w
    pixels = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_mask = pixels < out_pixels
    parent_h, parent_w = (pixels // out_w) // SCALE, (pixels % out_w) // SCALE
    group_channel = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    channel_mask = group_channel < group_channels
    channel = (batch * channels + group * group_channels + group_channel).to(tl.int64)
    x_rows = x_ptr + channel[:, None] * (height * width)
    kernel_base = kernels_ptr + batch_group.to(tl.int64) * (KERNEL_SIZE * KERNEL_SIZE) * out_pixels
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC_DTYPE)
    for tap in tl.static_range(KERNEL_SIZE * KERNEL_SIZE):
        row = parent_h + (tap // KERNEL_SIZE - KERNEL_SIZE // 2)
        col = parent_w + (tap % KERNEL_SIZE - KERNEL_SIZE // 2)
        inside = pixel_mask & (row >= 0) & (row < height) & (col >= 0) & (col < width)
        weight = tl.load(kernel_base + tap * out_pixels + pixels, mask=pixel_mask, other=0.0)
        values = tl.load(x_rows + (row * width + col)[None, :],
                         mask=channel_mask[:, None] & inside[None, :], other=0.0)
        acc += values.to(ACC_DTYPE) * weight.to(ACC_DTYPE)[None, :]
    out_rows = out_ptr + channel[:, None] * out_pixels
    tl.store(out_rows + pixels[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=channel_mask[:, None] & pixel_mask[None, :])


@triton.jit
def _reassemble_kernel_grad_kernel(x_ptr, grad_ptr, out_ptr, channels, height, width, out_h,
                                   out_w, groups, group_channels,
                                   KERNEL_SIZE: tl.constexpr, SCALE: tl.constexpr,
                                   ACC_DTYPE: tl.constexpr, BLOCK_C: tl.constexpr,
                                   BLOCK_P: tl.constexpr):
    pixel_block, batch_group = tl.program_id(0), tl.program_id(1)
    batch, group = batch_group // groups, batch_group % groups
    out_pixels = out_h * out_w
    pixels = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_mask = pixels < out_pixels
    parent_h, parent_w = (pixels // out_w) // SCALE, (pixels % out_w) // SCALE
    first_channel = batch * channels + group * group_channels
    out_base = out_ptr + batch_group.to(tl.int64) * (KERNEL_SIZE * KERNEL_SIZE) * out_pixels
    for tap in tl.static_range(KERNEL_SIZE * KERNEL_SIZE):
        row = parent_h + (tap // KERNEL_SIZE - KERNEL_SIZE // 2)
        col = parent_w + (tap % KERNEL_SIZE - KERNEL_SIZE // 2)
        inside = pixel_mask & (row >= 0) & (row < height) & (col >= 0) & (col < width)
        acc = tl.zeros((BLOCK_P,), dtype=ACC_DTYPE)
        for channel_start in range(0, group_channels, BLOCK_C):
            group_channel = channel_start + tl.arange(0, BLOCK_C)
            channel_mask = group_channel < group_channels
            channel = (first_channel + group_channel).to(tl.int64)
            grad = tl.load(grad_ptr + channel[:, None] * out_pixels + pixels[None, :],
                           mask=channel_mask[:, None] & pixel_mask[None, :], other=0.0)
            values = tl.load(x_ptr + channel[:, None] * (height * width)
                             + (row * width + col)[None, :],
                             mask=channel_mask[:, None] & inside[None, :], other=0.0)
            acc += tl.sum(grad.to(ACC_DTYPE) * values.to(ACC_DTYPE), axis=0)
        tl.store(out_base + tap * out_pixels + pixels, acc.to(out_ptr.dtype.element_ty),
                 mask=pixel_mask)


@triton.jit
def _reassemble_input_grad_kernel(kernels_ptr, grad_ptr, out_ptr, channels, height, width,
                                  out_h, out_w, groups, group_channels,
                                  KERNEL_SIZE: tl.constexpr, SCALE: tl.constexpr,
                                  ACC_DTYPE: tl.constexpr, BLOCK_C: tl.constexpr,
                                  BLOCK_P: tl.constexpr):
    pixel_block, channel_block, batch_group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    batch, group = batch_group // groups, batch_group % groups
    out_pixels = out_h * out_w
    pixels = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)  # low-resolution pixels
    pixel_mask = pixels < height * width
    low_h, low_w = pixels // width, pixels % width
    group_channel = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    channel_mask = group_channel < group_channels
    channel = (batch * channels + group * group_channels + group_channel).to(tl.int64)
    grad_rows = grad_ptr + channel[:, None] * out_pixels
    kernel_base = kernels_ptr + batch_group.to(tl.int64) * (KERNEL_SIZE * KERNEL_SIZE) * out_pixels
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC_DTYPE)
    for tap in tl.static_range(KERNEL_SIZE * KERNEL_SIZE):
        # The parent pixel whose window has this pixel at ``tap``.
        parent_h = low_h - (tap // KERNEL_SIZE - KERNEL_SIZE // 2)
        parent_w = low_w - (tap % KERNEL_SIZE - KERNEL_SIZE // 2)
        reads = (pixel_mask & (parent_h >= 0) & (parent_h < height) & (parent_w >= 0)
                 & (parent_w < width))
        # Sum the s*s phases of a tap apart, then add: shorter chains, smaller rounding error.
        tap_sum = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC_DTYPE)
        for phase in range(SCALE * SCALE):
            out_row = parent_h * SCALE + phase // SCALE
            out_col = parent_w * SCALE + phase % SCALE
            valid = reads & (out_row < out_h) & (out_col < out_w)
            out_pixel = out_row * out_w + out_col
            weight = tl.load(kernel_base + tap * out_pixels + out_pixel, mask=valid, other=0.0)
            grad = tl.load(grad_rows + out_pixel[None, :],
                           mask=channel_mask[:, None] & valid[None, :], other=0.0)
            tap_sum += grad.to(ACC_DTYPE) * weight.to(ACC_DTYPE)[None, :]
        acc += tap_sum
    out_rows = out_ptr + channel[:, None] * (height * width)
    tl.store(out_rows + pixels[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=channel_mask[:, None] & pixel_mask[None, :])


def _accumulation_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _sizes(input_shape, kernels_or_grad_shape, groups):
    batch, channels, height, width = input_shape
    out_h, out_w = kernels_or_grad_shape[-2:]
    return dict(channels=channels, height=height, width=width, out_h=out_h, out_w=out_w,
                groups=groups, group_channels=channels // groups)


def reassemble_forward(x: Tensor, kernels: Tensor, kernel_size: int,
                       scale_factor: int) -> Tensor:
    """x (B, C, H, W), kernels (B, G, k*k, oH, oW) -> (B, C, oH, oW)."""
    x, kernels = x.contiguous(), kernels.contiguous()
    batch, channels = x.shape[:2]
    groups, _, out_h, out_w = kernels.shape[1:]
    out = x.new_empty(batch, channels, out_h, out_w)
    launch = (triton.cdiv(out_h * out_w, BLOCK_PIXELS),
              triton.cdiv(channels // groups, BLOCK_CHANNELS), batch * groups)
    _reassemble_forward_kernel[launch](
        x, kernels, out, **_sizes(x.shape, kernels.shape, groups), KERNEL_SIZE=kernel_size,
        SCALE=scale_factor, ACC_DTYPE=_accumulation_dtype(x.dtype), BLOCK_C=BLOCK_CHANNELS,
        BLOCK_P=BLOCK_PIXELS)
    return out


def reassemble_kernel_grad(x: Tensor, grad_out: Tensor, kernel_size: int, scale_factor: int,
                           groups: int) -> Tensor:
    """x (B, C, H, W), upstream gradient (B, C, oH, oW) -> (B, G, k*k, oH, oW)."""
    x, grad_out = x.contiguous(), grad_out.contiguous()
    batch = x.shape[0]
    out_h, out_w = grad_out.shape[-2:]
    out = x.new_empty(batch, groups, kernel_size * kernel_size, out_h, out_w)
    launch = (triton.cdiv(out_h * out_w, BLOCK_PIXELS), batch * groups)
    _reassemble_kernel_grad_kernel[launch](
        x, grad_out, out, **_sizes(x.shape, grad_out.shape, groups), KERNEL_SIZE=kernel_size,
        SCALE=scale_factor, ACC_DTYPE=_accumulation_dtype(x.dtype), BLOCK_C=BLOCK_CHANNELS,
        BLOCK_P=BLOCK_PIXELS)
    return out


def reassemble_input_grad(kernels: Tensor, grad_out: Tensor, kernel_size: int,
                          scale_factor: int, input_shape: Tuple[int, int, int, int]) -> Tensor:
    """kernels (B, G, k*k, oH, oW), upstream gradient (B, C, oH, oW) -> (B, C, H, W)."""
    kernels, grad_out = kernels.contiguous(), grad_out.contiguous()
    batch, channels, height, width = input_shape
    groups = kernels.shape[1]
    out = grad_out.new_empty(batch, channels, height, width)
    launch = (triton.cdiv(height * width, BLOCK_PIXELS),
              triton.cdiv(channels // groups, BLOCK_CHANNELS), batch * groups)
    _reassemble_input_grad_kernel[launch](
        kernels, grad_out, out, **_sizes(input_shape, grad_out.shape, groups),
        KERNEL_SIZE=kernel_size, SCALE=scale_factor,
        ACC_DTYPE=_accumulation_dtype(grad_out.dtype), BLOCK_C=BLOCK_CHANNELS,
        BLOCK_P=BLOCK_PIXELS)
    return out


class TritonPrimitives:
    """The Triton path as the primitives :class:`mmdynup.ops.reassembly.Reassembly` and
    :class:`mmdynup.ops.similarity_kernels.LocalSimilarity` run (same interface as
    :class:`mmdynup.ops.reassembly.TiledPrimitives`)."""

    name = 'triton'

    @staticmethod
    def reassemble(x: Tensor, kernels: Tensor, kernel_size: int, scale_factor: int) -> Tensor:
        return reassemble_forward(x, kernels, kernel_size, scale_factor)

    @staticmethod
    def gradients(grad_out: Tensor, kernel_size: int, scale_factor: int,
                  input_shape: Tuple[int, int, int, int], groups: int,
                  x: Optional[Tensor] = None, kernels: Optional[Tensor] = None
                  ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        grad_x = (reassemble_input_grad(kernels, grad_out, kernel_size, scale_factor,
                                        input_shape) if kernels is not None else None)
        grad_kernels = (reassemble_kernel_grad(x, grad_out, kernel_size, scale_factor, groups)
                        if x is not None else None)
        return grad_x, grad_kernels
