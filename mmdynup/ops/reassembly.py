"""Reassembly: each high-resolution pixel is a normalised k x k combination of the low-resolution
window around its parent pixel (CARAFE, Wang et al. ICCV 2019; reused by FADE and SAPA).

``out[b, c, i, j] = sum_{u, v} kernels[b, g(c), u * k + v, i, j] * x_pad[b, c, i // s + u, j // s + v]``

with ``x_pad`` zero-padded by ``k // 2`` and channel ``c`` in group ``g(c) = c // (C / G)``.

Implementations (chosen by :mod:`mmdynup.ops.dispatch`; all give the same numbers):

* :func:`reassemble_reference` - the specification: unfold, gather, einsum. It materialises a
  (B, C, k*k, oH, oW) tensor, k*k (25) times the output.
* the tiled path (:class:`TiledPrimitives` through :class:`Reassembly`) - pure PyTorch,
  memory-lean, forward and backward. Seen from one low-resolution pixel, reassembly is a small
  matrix product: its s*s output pixels (one per sub-pixel phase) are
  ``kernels (s*s, k*k) @ window (k*k, C/G)``. The input is copied once, zero-padded and
  channels-last; then for each window row u every pixel's (k, C/G) window row is a fixed-stride
  view of it (:class:`WindowGrid`), so a tile of low-resolution rows costs k ``baddbmm`` calls
  and no unfold. The backward recomputes the same views: ``grad @ window_u^T`` for the kernel
  gradient, ``kernels_u^T @ grad`` added back with ``index_add_`` for the input gradient.
  Besides its inputs and outputs it allocates the padded input, the pixel-major kernels and
  per-tile buffers of about :data:`CPU_TILE_ELEMENTS` per thread.
* ``mmdynup.ops.triton_kernels.TritonPrimitives`` - the same primitives as Triton GPU kernels.

Chosen by measurement (CPU, float32, B = 2, C = 256, k = 5, forward+backward, one thread so that
the shared machine's load does not blur the comparison; bilinear interpolation of the same input
80 ms at 64x64 -> 128x128 and 330 ms at 128x128 -> 256x256):

==================================================================  ==========  ============
implementation                                                        64 -> 128   128 -> 256
==================================================================  ==========  ============
reference (unfold + einsum; issue's table, 2 threads)                   66x           146x
loop over the k*k taps, fused ``addcmul_`` on L2-sized channel blocks   > 3.5x (1)        -
tiles of copied windows (``unfold`` per tile) + ``bmm``                 2.1x          3.0x
tiles of strided window views + ``baddbmm`` (this path)                 1.8x          2.0x
==================================================================  ==========  ============

(1) forward alone 95 ms, 3.5x bilinear's forward: each tap re-reads and re-writes the output
block. In the final path about a third of the time is layout copies (NCHW <-> channels-last
tiles), a third ``bmm``, the rest ``index_add_`` and bookkeeping. A C++/OpenMP kernel could save
part of the copies, but the tiled path already meets the target (<= 10x bilinear) without an
install-time compiler, so there is none.

The three primitives are also SAPA's local similarity: its logits are this op's kernel
gradient, its query gradient this op's forward and its key gradient this op's input gradient
(:mod:`mmdynup.ops.similarity_kernels`).
"""
from __future__ import annotations

import functools
import numbers
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import is_autocast_enabled
from .dispatch import (autocast_disabled, autocast_inputs, resolve_implementation,
                       triton_kernels)

#: Output elements (s*s x C per low-resolution pixel) of one tile per CPU thread: the tile's
#: accumulator and window rows then stay in each core's L2 (2^19 float32 = 2 MB; measured on one
#: thread at 64x64 and 128x128, C = 256: 2^18 .. 2^20 within noise, 2^21 and up 20-60% slower).
#: Scaled by the thread count, since every thread takes its share of a tile.
CPU_TILE_ELEMENTS = 1 << 19
#: On GPUs (``impl='tiled'`` without Triton) larger tiles keep the number of launches small.
GPU_TILE_ELEMENTS = 1 << 25


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def check_reassembly_arguments(x: Tensor, kernels: Tensor, kernel_size: int,
                               scale_factor: int) -> None:
    """Shape contract at the op boundary (names the offending argument)."""
    kernel_size = _check_int('kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd (the window is centred on the parent pixel), '
                         f'got {kernel_size}')
    scale_factor = _check_int('scale_factor', scale_factor, 1)
    if not isinstance(x, Tensor) or not isinstance(kernels, Tensor):
        raise TypeError(f'x and kernels must be tensors, got {type(x).__name__} and '
                        f'{type(kernels).__name__}')
    if x.dim() != 4 or kernels.dim() != 5:
        raise ValueError(f'reassemble expects x (B, C, H, W) and kernels (B, G, k*k, oH, oW), got '
                         f'x {tuple(x.shape)} and kernels {tuple(kernels.shape)}')
    if not x.is_floating_point() or not kernels.is_floating_point() or x.device != kernels.device:
        raise TypeError(f'x ({x.dtype}, {x.device}) and kernels ({kernels.dtype}, '
                        f'{kernels.device}) must be floating point on the same device')
    if x.dtype != kernels.dtype and not is_autocast_enabled(x.device.type):
        raise TypeError(f'x ({x.dtype}) and kernels ({kernels.dtype}) must have the same dtype '
                        f'(outside autocast)')
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


# --- tiled pure-PyTorch path ---------------------------------------------------------------------


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The tiled path computes 16-bit inputs in float32 (sums over k*k taps and C channels), so
    it is never less accurate than the reference in the same precision."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class WindowGrid:
    """Geometry and layouts of the tiled path for x (B, C, H, W), G kernel groups, window k,
    scale s and output (oH, oW).

    The zero-padded input is stored rows first, channels last, (H + 2r, B, Wp = W + 2r, C), and
    read as a flat list of pixels: padded pixel (h, b, w) is row ``n = (h * B + b) * Wp + w``, so
    the k taps (u, v = 0 .. k-1) of the window whose top-left corner is n are the k consecutive
    rows ``n + u * B * Wp + v``. For each u every pixel's window row is then a (k, C/G) matrix at
    a fixed stride, and all of them together are one strided view of the input: ``bmm`` reads
    the windows in place, nothing is unfolded. Kernels and gradients use the same pixel order
    ("pixel-major", (H, B, Wp, G, ...)); the 2r padding columns are computed with zero kernels
    and dropped.

    A tile is a run of low-resolution rows whose working set (s*s x C outputs per pixel) is
    about :data:`CPU_TILE_ELEMENTS`; per-tile buffers are allocated once and reused (fresh
    multi-MB buffers would page-fault on every tile).
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, groups: int,
                 kernel_size: int, scale_factor: int, out_size: Tuple[int, int],
                 dtype: torch.dtype, device: torch.device) -> None:
        self.batch, self.channels, self.height, self.width = batch, channels, height, width
        self.groups, self.group_channels = groups, channels // groups
        self.kernel_size, self.scale_factor = kernel_size, scale_factor
        self.radius, self.taps, self.phases = kernel_size // 2, kernel_size ** 2, scale_factor ** 2
        self.out_h, self.out_w = out_size
        self.padded_width = width + 2 * self.radius
        self.row_pixels = batch * self.padded_width
        self.dtype, self.compute_dtype, self.device = dtype, compute_dtype(dtype), device
        budget = (CPU_TILE_ELEMENTS * torch.get_num_threads() if device.type == 'cpu'
                  else GPU_TILE_ELEMENTS)
        self.tile_height = max(1, min(height, budget // (self.row_pixels * self.phases * channels)))

    def tiles(self) -> Iterator[Tuple[int, int]]:
        """``(start, stop)`` low-resolution row ranges."""
        for start in range(0, self.height, self.tile_height):
            yield start, min(self.height, start + self.tile_height)

    def tile_pixels(self, start: int, stop: int) -> int:
        """Pixels of a tile whose window stays inside the padded input: all but the last 2r
        (padding columns of the last row)."""
        return (stop - start) * self.row_pixels - 2 * self.radius

    # layouts ---------------------------------------------------------------------------------

    def padded_input(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> zero-padded (H + 2r, B, Wp, C) in the compute dtype (one copy)."""
        r = self.radius
        padded = x.new_zeros(self.height + 2 * r, self.batch, self.padded_width, self.channels,
                             dtype=self.compute_dtype)
        padded[r:r + self.height, :, r:r + self.width].copy_(x.permute(2, 0, 3, 1))
        return padded

    def pixel_major_kernels(self, kernels: Tensor) -> Tensor:
        """(B, G, k*k, oH, oW) -> (H, B, Wp, G, s*s, k, k); zero outside (oH, oW) and in the
        padding columns (one copy)."""
        s, k = self.scale_factor, self.kernel_size
        result = kernels.new_zeros(self.height, self.batch, self.padded_width, self.groups,
                                   s, s, k, k, dtype=self.compute_dtype)
        if (self.out_h, self.out_w) != (s * self.height, s * self.width):
            kernels = F.pad(kernels, (0, s * self.width - self.out_w,
                                      0, s * self.height - self.out_h))
        # (H, B, W, G, s, s, k, k) seen as (B, G, k, k, H, s, W, s): one strided copy.
        result[:, :, :self.width].permute(1, 3, 6, 7, 0, 4, 2, 5).copy_(
            kernels.reshape(self.batch, self.groups, k, k, self.height, s, self.width, s))
        return result.view(self.height, self.batch, self.padded_width, self.groups, s * s, k, k)

    def phase_view(self, high_res: Tensor) -> Tensor:
        """(B, C, oH, oW) -> (B, G, C/G, H, s, W, s), zero-padded to the full s x grid.

        A view whatever the memory layout (a channels-last query stays channels-last, so the
        per-tile gathers read it contiguously); only a cropped output is padded (one copy).
        """
        s = self.scale_factor
        if (self.out_h, self.out_w) != (s * self.height, s * self.width):
            high_res = F.pad(high_res, (0, s * self.width - self.out_w,
                                        0, s * self.height - self.out_h))
        return (high_res.unflatten(1, (self.groups, self.group_channels))
                .unflatten(3, (self.height, s)).unflatten(5, (self.width, s)))

    def new_tile_buffer(self, *trailing: int, zero: bool = False) -> Tensor:
        """A reusable (tile_height * B * Wp * G, *trailing) buffer in the compute dtype."""
        rows = self.tile_height * self.row_pixels * self.groups
        make = torch.zeros if zero else torch.empty
        return make(rows, *trailing, dtype=self.compute_dtype, device=self.device)

    def pixel_tile_view(self, buffer: Tensor, start: int, stop: int) -> Tensor:
        """A tile buffer's first rows as (rows, B, Wp, G, ...)."""
        rows = (stop - start) * self.row_pixels * self.groups
        return buffer[:rows].view(stop - start, self.batch, self.padded_width, self.groups,
                                  *buffer.shape[1:])

    def window_rows(self, padded: Tensor, start: int, stop: int, u: int) -> Tensor:
        """Row u of every window of a tile: a (pixels * G, k, C/G) strided view of ``padded``."""
        pixels = self.tile_pixels(start, stop)
        return padded.as_strided(
            (pixels * self.groups, self.kernel_size, self.group_channels),
            (self.group_channels, self.channels, 1),
            padded.storage_offset() + (start + u) * self.row_pixels * self.channels)

    def kernel_rows(self, kernels_pm: Tensor, start: int, stop: int, u: int) -> Tensor:
        """Taps (u, 0..k-1) of a tile's pixel-major kernels: (pixels * G, s*s, k) view."""
        pixels = self.tile_pixels(start, stop)
        tile = kernels_pm[start:stop].view(-1, self.phases, self.kernel_size, self.kernel_size)
        return tile[:pixels * self.groups, :, u]

    def window_rows_index(self, start: int, stop: int) -> Tensor:
        """Destination of the window gradients of window row u = 0 of a tile, for
        ``grad_padded.view(-1, C/G)``: entry (n, g, v) -> ``((start * B * Wp + n + v) * G + g)``,
        flattened; row u adds ``u * B * Wp * G``."""
        pixels = self.tile_pixels(start, stop)
        arange = functools.partial(torch.arange, device=self.device)
        pixel_rows = start * self.row_pixels + arange(pixels).view(-1, 1, 1)
        index = (pixel_rows + arange(self.kernel_size).view(1, 1, -1)) * self.groups
        return (index + arange(self.groups).view(1, -1, 1)).flatten()


def tiled_reassemble_forward(grid: WindowGrid, x: Tensor, kernels: Tensor) -> Tensor:
    """Reassembly (B, C, H, W) x (B, G, k*k, oH, oW) -> (B, C, oH, oW), tile by tile:
    per tile and window row u, one ``baddbmm`` (s*s, k) @ (k, C/G) over all pixels."""
    s, k = grid.scale_factor, grid.kernel_size
    padded = grid.padded_input(x)
    kernels_pm = grid.pixel_major_kernels(kernels)
    out = x.new_empty(grid.batch, grid.groups, grid.group_channels, grid.height, s, grid.width, s)
    accumulator = grid.new_tile_buffer(grid.phases, grid.group_channels)
    for start, stop in grid.tiles():
        rows = grid.tile_pixels(start, stop) * grid.groups
        for u in range(k):
            accumulator[:rows].baddbmm_(grid.kernel_rows(kernels_pm, start, stop, u),
                                        grid.window_rows(padded, start, stop, u),
                                        beta=1 if u else 0)
        result = grid.pixel_tile_view(accumulator, start, stop)[:, :, :grid.width]
        result = result.unflatten(4, (s, s))  # (h, B, W, G, s, s, C/G)
        out[:, :, :, start:stop].copy_(result.permute(1, 3, 6, 0, 4, 2, 5))
    out = out.view(grid.batch, grid.channels, s * grid.height, s * grid.width)
    return crop_to_output(out, grid.out_h, grid.out_w)


def tiled_reassemble_backward(grid: WindowGrid, grad_out: Tensor, x: Optional[Tensor] = None,
                              kernels: Optional[Tensor] = None
                              ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`tiled_reassemble_forward`: w.r.t. ``x`` when ``kernels`` is given,
    w.r.t. ``kernels`` when ``x`` is given.

    Per tile the (s*s, C/G) output gradients of each pixel are gathered once; the kernel gradient
    of window row u is ``grad @ window_u^T`` (``bmm`` against the strided windows, recomputed,
    never stored); the input gradient is ``kernels_u^T @ grad`` per pixel, added back to the k
    window positions of row u with one ``index_add_``.

    Returns:
        (grad_x (B, C, H, W) or None, grad_kernels (B, G, k*k, oH, oW) or None).
    """
    s, k, r = grid.scale_factor, grid.kernel_size, grid.radius
    phases = grid.phase_view(grad_out)
    # Padding columns stay zero: zero kernels there must not meet uninitialised values.
    grad_tile = grid.new_tile_buffer(grid.phases, grid.group_channels, zero=True)
    if x is not None:
        padded = grid.padded_input(x)
        kernel_grads = x.new_empty(grid.batch, grid.groups, k, k, grid.height, s, grid.width, s)
        kernel_grad_tile = torch.empty(k, *grad_tile.shape[:2], k, dtype=grid.compute_dtype,
                                       device=grid.device)
    if kernels is not None:
        kernels_pm = grid.pixel_major_kernels(kernels)
        grad_padded = torch.zeros((grid.height + 2 * r) * grid.row_pixels, grid.channels,
                                  dtype=grid.compute_dtype, device=grid.device)
        grad_rows = grad_padded.view(-1, grid.group_channels)  # row (pixel, group)
        input_grad_tile = torch.empty(grad_tile.shape[0], k, grid.group_channels,
                                      dtype=grid.compute_dtype, device=grid.device)
    for start, stop in grid.tiles():
        rows = grid.tile_pixels(start, stop) * grid.groups
        tile = grid.pixel_tile_view(grad_tile, start, stop)[:, :, :grid.width]
        tile.copy_(phases[:, :, :, start:stop].permute(3, 0, 5, 1, 4, 6, 2).flatten(4, 5))
        if x is not None:
            for u in range(k):
                windows = grid.window_rows(padded, start, stop, u)
                torch.bmm(grad_tile[:rows], windows.transpose(1, 2), out=kernel_grad_tile[u, :rows])
            result = kernel_grad_tile.view(k, -1, grid.batch, grid.padded_width, grid.groups,
                                           s, s, k)[:, :stop - start, :, :grid.width]
            kernel_grads[..., start:stop, :, :, :].copy_(result.permute(2, 4, 0, 7, 1, 5, 3, 6))
        if kernels is not None:
            index = grid.window_rows_index(start, stop)
            for u in range(k):
                torch.bmm(grid.kernel_rows(kernels_pm, start, stop, u).transpose(1, 2),
                          grad_tile[:rows], out=input_grad_tile[:rows])
                grad_rows.index_add_(0, index + u * grid.row_pixels * grid.groups,
                                     input_grad_tile[:rows].view(-1, grid.group_channels))
    grad_x = grad_kernels = None
    if kernels is not None:
        grad_x = grad_padded.view(grid.height + 2 * r, grid.batch, grid.padded_width,
                                  grid.channels)[r:r + grid.height, :, r:r + grid.width]
        grad_x = grad_x.permute(1, 3, 0, 2).to(grid.dtype, memory_format=torch.contiguous_format)
    if x is not None:
        grad_kernels = kernel_grads.view(grid.batch, grid.groups, grid.taps, s * grid.height,
                                         s * grid.width)
        grad_kernels = crop_to_output(grad_kernels, grid.out_h, grid.out_w)
    return grad_x, grad_kernels


def crop_to_output(full: Tensor, out_h: int, out_w: int) -> Tensor:
    """Crop (..., sH, sW) to the top-left (oH, oW) window as a contiguous tensor."""
    if full.shape[-2:] == (out_h, out_w):
        return full
    return full[..., :out_h, :out_w].contiguous()


class TiledPrimitives:
    """The tiled pure-PyTorch path as the three primitives every fast path provides (see
    :class:`Reassembly`; Triton's are ``mmdynup.ops.triton_kernels.TritonPrimitives``)."""

    name = 'tiled'

    @staticmethod
    def reassemble(x: Tensor, kernels: Tensor, kernel_size: int, scale_factor: int) -> Tensor:
        """Reassembly forward, shapes as :func:`reassemble_reference`."""
        grid = WindowGrid(*x.shape, kernels.shape[1], kernel_size, scale_factor,
                          tuple(kernels.shape[-2:]), x.dtype, x.device)
        return tiled_reassemble_forward(grid, x, kernels)

    @staticmethod
    def gradients(grad_out: Tensor, kernel_size: int, scale_factor: int,
                  input_shape: Tuple[int, int, int, int], groups: int,
                  x: Optional[Tensor] = None, kernels: Optional[Tensor] = None
                  ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """(grad w.r.t. x if ``kernels`` is given, grad w.r.t. kernels if ``x`` is given) for
        the upstream gradient ``grad_out`` (B, C, oH, oW); ``input_shape`` is x's (B, C, H, W)
        and ``groups`` the kernel groups G."""
        grid = WindowGrid(*input_shape, groups, kernel_size, scale_factor,
                          tuple(grad_out.shape[-2:]), grad_out.dtype, grad_out.device)
        return tiled_reassemble_backward(grid, grad_out, x=x, kernels=kernels)


class Reassembly(torch.autograd.Function):
    """Reassembly through a fast path's primitives (``TiledPrimitives`` or Triton's): forward
    ``primitives.reassemble``, backward ``primitives.gradients``, which recompute what they need
    from x and the kernels instead of saving windows. Inputs as :func:`reassemble_reference`."""

    @staticmethod
    def forward(ctx, x: Tensor, kernels: Tensor, kernel_size: int, scale_factor: int,
                primitives) -> Tensor:
        ctx.save_for_backward(x, kernels)
        ctx.kernel_size, ctx.scale_factor, ctx.primitives = kernel_size, scale_factor, primitives
        with autocast_disabled(x.device.type):
            return primitives.reassemble(x, kernels, kernel_size, scale_factor)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, kernels = ctx.saved_tensors
        with autocast_disabled(x.device.type):
            grad_x, grad_kernels = ctx.primitives.gradients(
                grad_out, ctx.kernel_size, ctx.scale_factor, tuple(x.shape), kernels.shape[1],
                x=x if ctx.needs_input_grad[1] else None,
                kernels=kernels if ctx.needs_input_grad[0] else None)
        return grad_x, grad_kernels, None, None, None


def fast_primitives(chosen: str):
    """The primitives of a fast implementation name (``'tiled'`` or ``'triton'``)."""
    return triton_kernels().TritonPrimitives if chosen == 'triton' else TiledPrimitives


def reassemble(x: Tensor, kernels: Tensor, kernel_size: int, scale_factor: int,
               impl: Optional[str] = None) -> Tensor:
    """Reassemble ``x`` with per-pixel ``kernels``; see :func:`reassemble_reference` for shapes.

    Args:
        impl: ``'auto'``, ``'reference'``, ``'tiled'`` or ``'triton'``; None follows
            :func:`mmdynup.ops.dispatch.use_implementation` (default ``'auto'``: Triton on CUDA,
            tiled elsewhere, the reference while exporting).
    """
    check_reassembly_arguments(x, kernels, kernel_size, scale_factor)
    chosen = resolve_implementation(impl, x, kernels)
    if chosen == 'reference':
        return reassemble_reference(x, kernels, kernel_size, scale_factor)
    x, kernels = autocast_inputs(x, kernels)
    return Reassembly.apply(x, kernels, kernel_size, scale_factor, fast_primitives(chosen))


class GatedReassembly(torch.autograd.Function):
    """``gate * guide + (1 - gate) * reassemble(x, kernels)`` (FADE's gated output) through a
    fast path's primitives without keeping the reassembled map: the forward blends it into the
    output in place; the backward recomputes it once for the gate's gradient and reuses that
    buffer for the reassembly's upstream gradient ``(1 - gate) * grad``. Besides the output and
    the gradients it allocates one output-sized buffer, in the backward only. Inputs as
    :func:`gated_reassemble` (all of one dtype)."""

    @staticmethod
    def forward(ctx, x: Tensor, kernels: Tensor, gate: Tensor, guide: Tensor, kernel_size: int,
                scale_factor: int, primitives) -> Tensor:
        ctx.save_for_backward(x, kernels, gate, guide)
        ctx.kernel_size, ctx.scale_factor, ctx.primitives = kernel_size, scale_factor, primitives
        with autocast_disabled(x.device.type):
            return primitives.reassemble(x, kernels, kernel_size, scale_factor).lerp_(guide, gate)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, kernels, gate, guide = ctx.saved_tensors
        need_x, need_kernels, need_gate, need_guide = ctx.needs_input_grad[:4]
        grad_x = grad_kernels = grad_gate = grad_guide = None
        with autocast_disabled(x.device.type):
            if need_gate:
                # d out / d gate = guide - reassembled, summed over the channels.
                buffer = ctx.primitives.reassemble(x, kernels, ctx.kernel_size, ctx.scale_factor)
                grad_gate = buffer.sub_(guide).mul_(grad_out).sum(dim=1, keepdim=True).neg_()
            if need_x or need_kernels:
                buffer = torch.mul(grad_out, 1 - gate, out=buffer if need_gate else None)
                grad_x, grad_kernels = ctx.primitives.gradients(
                    buffer, ctx.kernel_size, ctx.scale_factor, tuple(x.shape), kernels.shape[1],
                    x=x if need_kernels else None, kernels=kernels if need_x else None)
            buffer = None  # freed before the guide's gradient is allocated
            if need_guide:
                grad_guide = grad_out * gate
        return grad_x, grad_kernels, grad_gate, grad_guide, None, None, None


def gated_reassemble(x: Tensor, kernels: Tensor, kernel_size: int, scale_factor: int,
                     gate: Tensor, guide: Tensor, impl: Optional[str] = None) -> Tensor:
    """``gate * guide + (1 - gate) * reassemble(x, kernels, kernel_size, scale_factor)``.

    FADE's output (Lu et al., ECCV 2022 / IJCV 2024): a per-pixel gate blends the guide into
    the reassembled feature. The fast paths (:class:`GatedReassembly`) keep no reassembled map.

    Args:
        x, kernels, kernel_size, scale_factor: as :func:`reassemble_reference`.
        gate: (B, 1, oH, oW) blend weights (FADE: in [0, 1]).
        guide: (B, C, oH, oW), the output's shape.
        impl: as :func:`reassemble`.

    Returns:
        (B, C, oH, oW).
    """
    check_reassembly_arguments(x, kernels, kernel_size, scale_factor)
    out_shape = (x.shape[0], x.shape[1], *kernels.shape[-2:])
    if tuple(guide.shape) != out_shape or tuple(gate.shape) != (out_shape[0], 1, *out_shape[2:]):
        raise ValueError(f'guide must be (B, C, oH, oW) = {out_shape} and gate (B, 1, oH, oW), '
                         f'got guide {tuple(guide.shape)} and gate {tuple(gate.shape)}')
    chosen = resolve_implementation(impl, x, kernels)
    if chosen == 'reference':
        return gate * guide + (1 - gate) * reassemble_reference(x, kernels, kernel_size,
                                                                scale_factor)
    x, kernels = autocast_inputs(x, kernels)
    primitives = fast_primitives(chosen)
    if not x.dtype == gate.dtype == guide.dtype:
        # Mixed dtypes (autocast): the composition, with its type promotion.
        upsampled = Reassembly.apply(x, kernels, kernel_size, scale_factor, primitives)
        return gate * guide + (1 - gate) * upsampled
    return GatedReassembly.apply(x, kernels, gate, guide, kernel_size, scale_factor, primitives)

