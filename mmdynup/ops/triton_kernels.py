"""Triton GPU kernels for reassembly (CARAFE, Wang et al. ICCV 2019; FADE; SAPA), SAPA's local
similarity (through the same three primitives, :mod:`mmdynup.ops.similarity_kernels`) and
grouped bilinear point sampling (DySample, SAPA-deform; :mod:`mmdynup.ops.point_sampling`).

Reassembly: ``out[b, c, i, j] = sum_t kernels[b, g, t, i, j] * x_pad[b, c, i // s + u, j // s + v]``
(t = u * k + v, ``x_pad`` zero-padded by k // 2; specification:
:func:`mmdynup.ops.reassembly.reassemble_reference`).

Every kernel here has the same shape: a program owns a tile of pixels of one (batch, group),
builds the tile's window geometry once - the (taps, pixels) gather offsets and the per-pixel
weights, held in registers - and then walks the group's channels one at a time, reading each
channel's row of the upstream tensor once. So the upstream gradient is read once per output
tile (the earlier kernel-gradient kernel re-read it once per tap, k*k times), and the kernels /
positions once per program instead of once per channel block.

* :func:`reassemble_forward` - program (output pixels, channel chunk, batch x group): per
  channel, gather the (k*k, pixels) window of ``x`` and sum it against the kernels.
* :func:`reassemble_kernel_grad` - program (output pixels, channel split, batch x group):
  ``grad_kernels[t, p] += grad[c, p] * x_window[c, t, p]`` with a (k*k, pixels) accumulator;
  it is also SAPA's similarity (query as ``grad``, key as ``x``). With a channel split the
  partial sums go to a float32 buffer summed afterwards (deterministic, no atomics).
* :func:`reassemble_input_grad` - gather form: program (low-resolution pixels, channel chunk,
  batch x group); each low-resolution pixel sums the k*k*s*s output pixels that read it, with
  their kernel weights gathered once per program. No atomics, deterministic.
* :func:`point_sample_forward` / :func:`point_sample_backward` - program (points, channel chunk
  or all channels, batch x group): corners and bilinear weights once per program; the backward
  reads each channel's upstream gradient once for both gradients, the positions' (a register
  accumulator) and the input's (``atomic_add`` into a float32 buffer: the scatter of an arbitrary
  sampling pattern has no gather form, so the input gradient's summation order is not fixed).

Sums run in float32 (float64 for float64 inputs); 16-bit results are rounded to nearest even by
:func:`_round_to`, the same bits compiled and interpreted. Tile sizes are untuned defaults
(:data:`TILE_ELEMENTS`, :data:`CHANNELS_PER_PROGRAM`, :data:`NUM_WARPS`); ``tools/gpu_check.py
--sweep`` times alternatives.

Everything here imports ``triton``; :mod:`mmdynup.ops.dispatch` imports this module only when the
Triton path is chosen. With ``TRITON_INTERPRET=1`` (set before ``triton`` is imported) the same
kernels run on CPU tensors through Triton's interpreter, which is how the tests cover them.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

#: Elements of one program's (window, pixels) register tile; pixels per program follow from it.
TILE_ELEMENTS = 4096
#: Channels one forward / input-gradient / point-sampling program walks (more programs, each
#: re-reading its tile's geometry, for small batches).
CHANNELS_PER_PROGRAM = 64
#: Warps of every program.
NUM_WARPS = 4
#: Programs per multiprocessor the kernel gradient aims for before splitting channels.
PROGRAMS_PER_MULTIPROCESSOR = 4
#: Fewest channels in one split of the kernel gradient.
MIN_SPLIT_CHANNELS = 32


@triton.jit
def _round_to(value, DTYPE: tl.constexpr):
    """``value`` (float32 / float64) as ``DTYPE``; bfloat16 by round-to-nearest-even in integer
    arithmetic, because Triton's interpreter truncates where compiled code rounds."""
    if DTYPE == tl.bfloat16:
        bits = value.to(tl.float32).to(tl.uint32, bitcast=True)
        rounded = bits + (0x7FFF + ((bits >> 16) & 1))
        bits = tl.where(value != value, bits | 0x400000, rounded)  # NaN stays a (quiet) NaN
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return value.to(DTYPE)


@triton.jit
def _channel_range(batch_group, groups, channels, group_channels, chunk, chunk_channels):
    """This program's channels: the flat (B * C) plane index of its (batch, group)'s first
    channel, and the group channels ``[start, stop)`` of chunk ``chunk``."""
    batch, group = batch_group // groups, batch_group % groups
    first_plane = (batch * channels + group * group_channels).to(tl.int64)
    start = chunk * chunk_channels
    return first_plane, start, tl.minimum(start + chunk_channels, group_channels)


@triton.jit
def _window(pixels, pixel_mask, out_w, height, width, KERNEL_SIZE: tl.constexpr,
            SCALE: tl.constexpr, TAPS: tl.constexpr):
    """Taps (TAPS >= k*k, padded) of the windows of output ``pixels``: gather offsets into one
    (H, W) plane, whether each tap is inside the image, and the tap indices."""
    taps = tl.arange(0, TAPS)
    parent_h = (pixels // out_w) // SCALE
    parent_w = (pixels % out_w) // SCALE
    row = parent_h[None, :] + (taps // KERNEL_SIZE - KERNEL_SIZE // 2)[:, None]
    col = parent_w[None, :] + (taps % KERNEL_SIZE - KERNEL_SIZE // 2)[:, None]
    inside = ((taps < KERNEL_SIZE * KERNEL_SIZE)[:, None] & pixel_mask[None, :]
              & (row >= 0) & (row < height) & (col >= 0) & (col < width))
    return row * width + col, inside, taps


@triton.jit
def _reassemble_forward_kernel(x_ptr, kernels_ptr, out_ptr, channels, height, width, out_h,
                               out_w, groups, group_channels, channels_per_program,
                               KERNEL_SIZE: tl.constexpr, SCALE: tl.constexpr,
                               TAPS: tl.constexpr, ACC_DTYPE: tl.constexpr,
                               BLOCK_P: tl.constexpr):
    pixel_block, channel_block, batch_group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    out_pixels = out_h * out_w
    pixels = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_mask = pixels < out_pixels
    offsets, inside, taps = _window(pixels, pixel_mask, out_w, height, width, KERNEL_SIZE, SCALE,
                                    TAPS)
    kernel_rows = (kernels_ptr + batch_group.to(tl.int64) * (KERNEL_SIZE * KERNEL_SIZE)
                   * out_pixels + taps[:, None] * out_pixels)
    weights = tl.load(kernel_rows + pixels[None, :],
                      mask=(taps < KERNEL_SIZE * KERNEL_SIZE)[:, None] & pixel_mask[None, :],
                      other=0.0).to(ACC_DTYPE)
    first_plane, start, stop = _channel_range(batch_group, groups, channels, group_channels,
                                              channel_block, channels_per_program)
    for channel in range(start, stop):
        plane = first_plane + channel
        values = tl.load(x_ptr + plane * (height * width) + offsets, mask=inside, other=0.0)
        result = tl.sum(values.to(ACC_DTYPE) * weights, axis=0)
        tl.store(out_ptr + plane * out_pixels + pixels,
                 _round_to(result, out_ptr.dtype.element_ty), mask=pixel_mask)


@triton.jit
def _reassemble_kernel_grad_kernel(x_ptr, grad_ptr, out_ptr, channels, height, width, out_h,
                                   out_w, groups, group_channels, channels_per_split,
                                   KERNEL_SIZE: tl.constexpr, SCALE: tl.constexpr,
                                   TAPS: tl.constexpr, ACC_DTYPE: tl.constexpr,
                                   BLOCK_P: tl.constexpr):
    pixel_block, split, batch_group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    out_pixels = out_h * out_w
    pixels = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_mask = pixels < out_pixels
    offsets, inside, taps = _window(pixels, pixel_mask, out_w, height, width, KERNEL_SIZE, SCALE,
                                    TAPS)
    first_plane, start, stop = _channel_range(batch_group, groups, channels, group_channels,
                                              split, channels_per_split)
    acc = tl.zeros((TAPS, BLOCK_P), dtype=ACC_DTYPE)
    for channel in range(start, stop):
        plane = first_plane + channel
        grad = tl.load(grad_ptr + plane * out_pixels + pixels, mask=pixel_mask, other=0.0)
        values = tl.load(x_ptr + plane * (height * width) + offsets, mask=inside, other=0.0)
        acc += values.to(ACC_DTYPE) * grad.to(ACC_DTYPE)[None, :]
    # (splits, B * G, k*k, oH, oW); one split is the result itself.
    out_rows = (out_ptr + (split * tl.num_programs(2) + batch_group).to(tl.int64)
                * (KERNEL_SIZE * KERNEL_SIZE) * out_pixels + taps[:, None] * out_pixels)
    tl.store(out_rows + pixels[None, :], _round_to(acc, out_ptr.dtype.element_ty),
             mask=(taps < KERNEL_SIZE * KERNEL_SIZE)[:, None] & pixel_mask[None, :])


@triton.jit
def _reassemble_input_grad_kernel(kernels_ptr, grad_ptr, out_ptr, channels, height, width,
                                  out_h, out_w, groups, group_channels, channels_per_program,
                                  KERNEL_SIZE: tl.constexpr, SCALE: tl.constexpr,
                                  WINDOW: tl.constexpr, ACC_DTYPE: tl.constexpr,
                                  BLOCK_P: tl.constexpr):
    pixel_block, channel_block, batch_group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    out_pixels = out_h * out_w
    pixels = pixel_block * BLOCK_P + tl.arange(0, BLOCK_P)  # low-resolution pixels
    pixel_mask = pixels < height * width
    # Entry w = tap * s*s + phase: the output pixel (of phase ``phase``) whose window has this
    # pixel at ``tap``.
    entries = tl.arange(0, WINDOW)
    tap, phase = entries // (SCALE * SCALE), entries % (SCALE * SCALE)
    parent_h = (pixels // width)[None, :] - (tap // KERNEL_SIZE - KERNEL_SIZE // 2)[:, None]
    parent_w = (pixels % width)[None, :] - (tap % KERNEL_SIZE - KERNEL_SIZE // 2)[:, None]
    out_row = parent_h * SCALE + (phase // SCALE)[:, None]
    out_col = parent_w * SCALE + (phase % SCALE)[:, None]
    reads = ((entries < KERNEL_SIZE * KERNEL_SIZE * SCALE * SCALE)[:, None] & pixel_mask[None, :]
             & (parent_h >= 0) & (parent_w >= 0) & (out_row < out_h) & (out_col < out_w))
    out_pixel = out_row * out_w + out_col
    kernel_base = kernels_ptr + batch_group.to(tl.int64) * (KERNEL_SIZE * KERNEL_SIZE) * out_pixels
    weights = tl.load(kernel_base + tap[:, None] * out_pixels + out_pixel, mask=reads,
                      other=0.0).to(ACC_DTYPE)
    first_plane, start, stop = _channel_range(batch_group, groups, channels, group_channels,
                                              channel_block, channels_per_program)
    for channel in range(start, stop):
        plane = first_plane + channel
        grad = tl.load(grad_ptr + plane * out_pixels + out_pixel, mask=reads, other=0.0)
        result = tl.sum(grad.to(ACC_DTYPE) * weights, axis=0)
        tl.store(out_ptr + plane * (height * width) + pixels,
                 _round_to(result, out_ptr.dtype.element_ty), mask=pixel_mask)


@triton.jit
def _bilinear_corners(positions_ptr, point_index, point_mask, height, width,
                      BORDER: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """Top-left corner, fractional parts and the clamp's derivative of each point; positions are
    ``(x, y)`` in pixels with centres at ``k + 0.5`` (``align_corners=False``)."""
    position_x = tl.load(positions_ptr + 2 * point_index, mask=point_mask, other=0.0)
    position_y = tl.load(positions_ptr + 2 * point_index + 1, mask=point_mask, other=0.0)
    sample_x = position_x.to(ACC_DTYPE) - 0.5
    sample_y = position_y.to(ACC_DTYPE) - 0.5
    slope_x = tl.full(sample_x.shape, 1.0, ACC_DTYPE)
    slope_y = tl.full(sample_y.shape, 1.0, ACC_DTYPE)
    if BORDER:
        # grid_sample's clamp: zero gradient on and beyond the outer pixel centres.
        slope_x = tl.where((sample_x > 0) & (sample_x < width - 1), slope_x, 0.0)
        slope_y = tl.where((sample_y > 0) & (sample_y < height - 1), slope_y, 0.0)
        sample_x = tl.minimum(tl.maximum(sample_x, 0.0), width - 1.0)
        sample_y = tl.minimum(tl.maximum(sample_y, 0.0), height - 1.0)
    else:
        # Two pixels out every corner reads zero already; the clamp keeps the integer corner
        # of a far-away point from overflowing.
        sample_x = tl.minimum(tl.maximum(sample_x, -2.0), width + 1.0)
        sample_y = tl.minimum(tl.maximum(sample_y, -2.0), height + 1.0)
    left, top = tl.floor(sample_x), tl.floor(sample_y)
    return (left.to(tl.int32), top.to(tl.int32), sample_x - left, sample_y - top, slope_x,
            slope_y)


@triton.jit
def _corner_reads(left, top, point_mask, height, width):
    """Offsets of the four corners (top-left, top-right, bottom-left, bottom-right) into one
    (H, W) plane and whether each is inside the image (outside corners read zero)."""
    inside_left, inside_right = (left >= 0) & (left < width), (left + 1 >= 0) & (left + 1 < width)
    inside_top = point_mask & (top >= 0) & (top < height)
    inside_bottom = point_mask & (top + 1 >= 0) & (top + 1 < height)
    offset = top * width + left
    return (offset, inside_top & inside_left, inside_top & inside_right,
            inside_bottom & inside_left, inside_bottom & inside_right)


@triton.jit
def _corner_values(plane, width, in_tl, in_tr, in_bl, in_br, ACC_DTYPE: tl.constexpr):
    """The four corners' values of one channel (``plane`` points at each top-left corner)."""
    return (tl.load(plane, mask=in_tl, other=0.0).to(ACC_DTYPE),
            tl.load(plane + 1, mask=in_tr, other=0.0).to(ACC_DTYPE),
            tl.load(plane + width, mask=in_bl, other=0.0).to(ACC_DTYPE),
            tl.load(plane + width + 1, mask=in_br, other=0.0).to(ACC_DTYPE))


@triton.jit
def _point_sample_forward_kernel(x_ptr, positions_ptr, out_ptr, channels, height, width, points,
                                 groups, group_channels, channels_per_program,
                                 BORDER: tl.constexpr, ACC_DTYPE: tl.constexpr,
                                 BLOCK_P: tl.constexpr):
    point_block, channel_block, batch_group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    point = point_block * BLOCK_P + tl.arange(0, BLOCK_P)
    point_mask = point < points
    left, top, frac_x, frac_y, _, _ = _bilinear_corners(
        positions_ptr, batch_group.to(tl.int64) * points + point, point_mask, height, width,
        BORDER, ACC_DTYPE)
    offset, in_tl, in_tr, in_bl, in_br = _corner_reads(left, top, point_mask, height, width)
    first_plane, start, stop = _channel_range(batch_group, groups, channels, group_channels,
                                              channel_block, channels_per_program)
    first_row = batch_group.to(tl.int64) * group_channels
    for channel in range(start, stop):
        top_left, top_right, bottom_left, bottom_right = _corner_values(
            x_ptr + (first_plane + channel) * (height * width) + offset, width, in_tl, in_tr,
            in_bl, in_br, ACC_DTYPE)
        upper = top_left + frac_x * (top_right - top_left)
        lower = bottom_left + frac_x * (bottom_right - bottom_left)
        tl.store(out_ptr + (first_row + channel) * points + point,
                 _round_to(upper + frac_y * (lower - upper), out_ptr.dtype.element_ty),
                 mask=point_mask)


@triton.jit
def _point_sample_backward_kernel(x_ptr, positions_ptr, grad_ptr, grad_x_ptr, grad_positions_ptr,
                                  channels, height, width, points, groups, group_channels,
                                  BORDER: tl.constexpr, NEED_X: tl.constexpr,
                                  NEED_POSITIONS: tl.constexpr, ACC_DTYPE: tl.constexpr,
                                  BLOCK_P: tl.constexpr):
    point_block, batch_group = tl.program_id(0), tl.program_id(1)
    point = point_block * BLOCK_P + tl.arange(0, BLOCK_P)
    point_mask = point < points
    point_index = batch_group.to(tl.int64) * points + point
    left, top, frac_x, frac_y, slope_x, slope_y = _bilinear_corners(
        positions_ptr, point_index, point_mask, height, width, BORDER, ACC_DTYPE)
    offset, in_tl, in_tr, in_bl, in_br = _corner_reads(left, top, point_mask, height, width)
    first_plane, _, _ = _channel_range(batch_group, groups, channels, group_channels, 0, 0)
    first_row = batch_group.to(tl.int64) * group_channels
    grad_x_pos = tl.zeros((BLOCK_P,), dtype=ACC_DTYPE)
    grad_y_pos = tl.zeros((BLOCK_P,), dtype=ACC_DTYPE)
    for channel in range(0, group_channels):
        grad = tl.load(grad_ptr + (first_row + channel) * points + point, mask=point_mask,
                       other=0.0).to(ACC_DTYPE)
        plane_offset = (first_plane + channel) * (height * width) + offset
        if NEED_POSITIONS:
            top_left, top_right, bottom_left, bottom_right = _corner_values(
                x_ptr + plane_offset, width, in_tl, in_tr, in_bl, in_br, ACC_DTYPE)
            grad_x_pos += grad * ((1 - frac_y) * (top_right - top_left)
                                  + frac_y * (bottom_right - bottom_left))
            grad_y_pos += grad * ((1 - frac_x) * (bottom_left - top_left)
                                  + frac_x * (bottom_right - top_right))
        if NEED_X:
            target = grad_x_ptr + plane_offset
            lower = grad * frac_y
            upper = grad - lower
            tl.atomic_add(target, upper - upper * frac_x, mask=in_tl)
            tl.atomic_add(target + 1, upper * frac_x, mask=in_tr)
            tl.atomic_add(target + width, lower - lower * frac_x, mask=in_bl)
            tl.atomic_add(target + width + 1, lower * frac_x, mask=in_br)
    if NEED_POSITIONS:
        dtype = grad_positions_ptr.dtype.element_ty
        tl.store(grad_positions_ptr + 2 * point_index, _round_to(grad_x_pos * slope_x, dtype),
                 mask=point_mask)
        tl.store(grad_positions_ptr + 2 * point_index + 1,
                 _round_to(grad_y_pos * slope_y, dtype), mask=point_mask)


# --- launchers -----------------------------------------------------------------------------------


def accumulation_dtype(*dtypes: torch.dtype):
    """Triton dtype of the sums: float64 if any input is float64, else float32."""
    return tl.float64 if torch.float64 in dtypes else tl.float32


def pixels_per_program(window: int) -> int:
    """Pixels of one program for a (window, pixels) register tile of :data:`TILE_ELEMENTS`."""
    return max(16, min(256, TILE_ELEMENTS // triton.next_power_of_2(window)))


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def kernel_grad_splits(programs: int, group_channels: int, device: torch.device) -> int:
    """Channel splits of the kernel gradient: enough programs to fill the GPU
    (:data:`PROGRAMS_PER_MULTIPROCESSOR` each), at least :data:`MIN_SPLIT_CHANNELS` channels a
    split; one on CPU (the interpreter)."""
    if device.type != 'cuda':
        return 1
    wanted = triton.cdiv(PROGRAMS_PER_MULTIPROCESSOR * _multiprocessors(device.index or 0),
                         programs)
    return max(1, min(wanted, group_channels // MIN_SPLIT_CHANNELS))


def _sizes(input_shape, high_res_shape, groups):
    batch, channels, height, width = input_shape
    out_h, out_w = high_res_shape[-2:]
    return dict(channels=channels, height=height, width=width, out_h=out_h, out_w=out_w,
                groups=groups, group_channels=channels // groups)


def reassemble_forward(x: Tensor, kernels: Tensor, kernel_size: int,
                       scale_factor: int) -> Tensor:
    """x (B, C, H, W), kernels (B, G, k*k, oH, oW) -> (B, C, oH, oW) in x's dtype."""
    x, kernels = x.contiguous(), kernels.contiguous()
    batch, channels = x.shape[:2]
    groups, _, out_h, out_w = kernels.shape[1:]
    out = x.new_empty(batch, channels, out_h, out_w)
    taps = triton.next_power_of_2(kernel_size ** 2)
    block = pixels_per_program(taps)
    chunk = CHANNELS_PER_PROGRAM
    launch = (triton.cdiv(out_h * out_w, block), triton.cdiv(channels // groups, chunk),
              batch * groups)
    _reassemble_forward_kernel[launch](
        x, kernels, out, **_sizes(x.shape, kernels.shape, groups), channels_per_program=chunk,
        KERNEL_SIZE=kernel_size, SCALE=scale_factor, TAPS=taps,
        ACC_DTYPE=accumulation_dtype(x.dtype, kernels.dtype), BLOCK_P=block, num_warps=NUM_WARPS)
    return out


def reassemble_kernel_grad(x: Tensor, grad_out: Tensor, kernel_size: int, scale_factor: int,
                           groups: int, splits: Optional[int] = None) -> Tensor:
    """x (B, C, H, W), upstream gradient (B, C, oH, oW) -> (B, G, k*k, oH, oW) in x's dtype.

    ``splits``: channel splits (None: :func:`kernel_grad_splits`); more than one sums float32
    partial results in a (splits, B, G, k*k, oH, oW) buffer.
    """
    x, grad_out = x.contiguous(), grad_out.contiguous()
    batch, channels = x.shape[:2]
    out_h, out_w = grad_out.shape[-2:]
    taps = triton.next_power_of_2(kernel_size ** 2)
    block = pixels_per_program(taps)
    pixel_blocks = triton.cdiv(out_h * out_w, block)
    group_channels = channels // groups
    if splits is None:
        splits = kernel_grad_splits(pixel_blocks * batch * groups, group_channels, x.device)
    per_split = triton.cdiv(group_channels, splits)
    splits = triton.cdiv(group_channels, per_split)
    accumulation = accumulation_dtype(x.dtype, grad_out.dtype)
    out = x.new_empty(splits, batch, groups, kernel_size ** 2, out_h, out_w,
                      dtype=x.dtype if splits == 1 else
                      (torch.float64 if accumulation == tl.float64 else torch.float32))
    _reassemble_kernel_grad_kernel[(pixel_blocks, splits, batch * groups)](
        x, grad_out, out, **_sizes(x.shape, grad_out.shape, groups),
        channels_per_split=per_split, KERNEL_SIZE=kernel_size, SCALE=scale_factor, TAPS=taps,
        ACC_DTYPE=accumulation, BLOCK_P=block, num_warps=NUM_WARPS)
    return out[0] if splits == 1 else out.sum(0).to(x.dtype)


def reassemble_input_grad(kernels: Tensor, grad_out: Tensor, kernel_size: int,
                          scale_factor: int, input_shape: Tuple[int, int, int, int]) -> Tensor:
    """kernels (B, G, k*k, oH, oW), upstream gradient (B, C, oH, oW) -> (B, C, H, W) in the
    gradient's dtype."""
    kernels, grad_out = kernels.contiguous(), grad_out.contiguous()
    batch, channels, height, width = input_shape
    groups = kernels.shape[1]
    out = grad_out.new_empty(batch, channels, height, width)
    window = triton.next_power_of_2(kernel_size ** 2 * scale_factor ** 2)
    block = pixels_per_program(window)
    chunk = CHANNELS_PER_PROGRAM
    launch = (triton.cdiv(height * width, block), triton.cdiv(channels // groups, chunk),
              batch * groups)
    _reassemble_input_grad_kernel[launch](
        kernels, grad_out, out, **_sizes(input_shape, grad_out.shape, groups),
        channels_per_program=chunk, KERNEL_SIZE=kernel_size, SCALE=scale_factor, WINDOW=window,
        ACC_DTYPE=accumulation_dtype(kernels.dtype, grad_out.dtype), BLOCK_P=block, num_warps=NUM_WARPS)
    return out


def _flat_points(positions: Tensor, groups: int) -> Tuple[Tensor, int]:
    """(B, G, *points, 2) -> contiguous (B, G, P, 2) and P."""
    points = positions[0, 0, ..., 0].numel()
    return positions.reshape(positions.shape[0], groups, points, 2).contiguous(), points


def point_sample_forward(x: Tensor, positions: Tensor, groups: int,
                         padding_mode: str = 'zeros') -> Tensor:
    """Grouped bilinear point sampling (specification:
    :func:`mmdynup.ops.point_sampling.point_sample_reference`).

    Args:
        x: (B, C, H, W).
        positions: (B, G, *points, 2) ``(x, y)`` in pixels of ``x``, centres at ``k + 0.5``.
        groups: G.
        padding_mode: ``'zeros'`` or ``'border'``.

    Returns:
        (B, G, C / G, *points) in x's dtype (interpolated in float32, float64 for float64).
    """
    x = x.contiguous()
    batch, channels, height, width = x.shape
    flat, points = _flat_points(positions, groups)
    out = x.new_empty(batch, groups, channels // groups, *positions.shape[2:-1])
    block = pixels_per_program(1)
    chunk = CHANNELS_PER_PROGRAM
    launch = (triton.cdiv(points, block), triton.cdiv(channels // groups, chunk), batch * groups)
    _point_sample_forward_kernel[launch](
        x, flat, out, channels, height, width, points, groups, channels // groups, chunk,
        BORDER=padding_mode == 'border', ACC_DTYPE=accumulation_dtype(x.dtype, positions.dtype),
        BLOCK_P=block, num_warps=NUM_WARPS)
    return out


def point_sample_backward(grad_out: Tensor, x: Tensor, positions: Tensor, groups: int,
                          padding_mode: str = 'zeros', need_x: bool = True,
                          need_positions: bool = True
                          ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`point_sample_forward` for the upstream ``grad_out``
    (B, G, C / G, *points): ``(grad_x (B, C, H, W) or None, grad_positions like positions or
    None)``. The input gradient is accumulated with atomics in float32 (float64 for float64)."""
    x, grad_out = x.contiguous(), grad_out.contiguous()
    batch, channels, height, width = x.shape
    flat, points = _flat_points(positions, groups)
    accumulation = accumulation_dtype(x.dtype, positions.dtype)
    wide = torch.float64 if accumulation == tl.float64 else torch.float32
    grad_x = torch.zeros(x.shape, dtype=wide, device=x.device) if need_x else None
    grad_positions = torch.empty_like(flat) if need_positions else None
    block = pixels_per_program(1)
    _point_sample_backward_kernel[(triton.cdiv(points, block), batch * groups)](
        x, flat, grad_out, grad_x if need_x else x, grad_positions if need_positions else flat,
        channels, height, width, points, groups, channels // groups,
        BORDER=padding_mode == 'border', NEED_X=need_x, NEED_POSITIONS=need_positions,
        ACC_DTYPE=accumulation, BLOCK_P=block, num_warps=NUM_WARPS)
    if grad_x is not None:
        grad_x = grad_x.to(x.dtype)
    if grad_positions is not None:
        grad_positions = grad_positions.view(positions.shape)
    return grad_x, grad_positions


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


class TritonPointSampling:
    """The Triton path of grouped bilinear point sampling, for a point-sampling autograd
    Function (:mod:`mmdynup.ops.point_sampling`): ``sample`` is the forward, ``gradients`` the
    backward (it needs only ``x`` and the positions, nothing saved from the forward)."""

    name = 'triton'

    @staticmethod
    def sample(x: Tensor, positions: Tensor, groups: int, padding_mode: str) -> Tensor:
        return point_sample_forward(x, positions, groups, padding_mode)

    @staticmethod
    def gradients(grad_out: Tensor, x: Tensor, positions: Tensor, groups: int,
                  padding_mode: str, need_x: bool = True, need_positions: bool = True
                  ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        return point_sample_backward(grad_out, x, positions, groups, padding_mode, need_x,
                                     need_positions)
