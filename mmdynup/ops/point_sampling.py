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
low-resolution parent pixel ``(i // s, j // s)``, into the absolute positions both operators use;
:func:`subpixel_point_sample` does both steps at once.

Implementations (chosen by :mod:`mmdynup.ops.dispatch`):

* :func:`point_sample_reference` - the specification: ``F.grid_sample`` on normalised positions,
  differentiated by autograd.
* :class:`PointSample` (``'tiled'``, ``'native'`` and ``'triton'``) - a custom autograd
  Function. Its forward builds the normalised sampling grid in
  one pass (for :func:`subpixel_point_sample` the parent centres, the s x s pixel-shuffle layout
  and the crop are part of that pass, so no position tensor is materialised) and calls a
  bilinear sampling kernel directly; its backward maps the grid gradient back to the offsets in
  one pass. The sampling kernels: on CPU tensors (``'native'``, the default there when the
  kernels build) the C++ kernel of :mod:`mmdynup.ops.native` on channels-last planes (four
  contiguous rows per sample; the backward computes the grid and image gradients in one pass
  per image, deterministic); with ``'triton'`` named explicitly (``impl='triton'`` or
  ``use_implementation('triton')``; ``'auto'`` keeps ATen's kernels on CUDA until the Triton
  ones are measured on a GPU) :class:`~mmdynup.ops.triton_kernels.TritonPointSampling`; else
  ATen's ``grid_sampler_2d`` and its fused backward, or, where
  that backward is not deterministic (CUDA under ``torch.use_deterministic_algorithms(True)``,
  pytorch issue 68959), :func:`deterministic_sampling_backward`: corner gathers and
  ``index_add_``, which PyTorch runs deterministically in that mode. :func:`sampling_backward`
  makes that choice.

On the CPU, at 2 x 256 x 128 x 128 -> x2 (2 threads), every pure-PyTorch formulation tried was
slower forward + backward than ``grid_sampler_2d`` and its backward (channel-last
``embedding_bag`` rows, sparse CSR matrix products, a 3 x 3 reassembly of bilinear weights);
the C++ kernel's backward is about 3.5x faster than ATen's (NCHW, a scatter per channel). The
rest of the time saved is around the kernel: no position tensor, no autograd chain over the
normalisation, the offsets' gradient written in the convolution's layout (and, in DySample, the
1x1 convolutions as one ``bmm``, :mod:`mmdynup.ops.pointwise`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import is_compiling
from .dispatch import (active_implementation, autocast_disabled, is_exporting, native_module,
                       resolve_implementation, triton_kernels)
from .native import channels_last_planes

PADDING_MODES = ('zeros', 'border')
#: ATen's ``GridSamplerPadding`` code of each padding mode (``torch.grid_sampler_2d``'s argument).
PADDING_CODES = {'zeros': 0, 'border': 1}
#: ATen's ``GridSamplerInterpolation`` code of bilinear interpolation.
BILINEAR = 0
#: The two backward kernels of :class:`PointSample`.
SAMPLING_BACKWARDS = ('fused', 'deterministic')


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


def point_sample(x: Tensor, positions: Tensor, groups: int, padding_mode: str = 'zeros',
                 impl: Optional[str] = None) -> Tensor:
    """Grouped bilinear point sampling; shapes as :func:`point_sample_reference`.

    ``impl`` (``'auto'``, ``'reference'``, ``'tiled'``, ``'triton'``, ``'native'``; None: the active
    :func:`~mmdynup.ops.dispatch.use_implementation` choice) selects the implementation, see the
    module docstring; every one gives the reference's result.
    """
    check_point_sample_arguments(x, positions, groups, padding_mode)
    chosen = point_sample_implementation(impl, x, positions)
    if chosen == 'reference':
        return point_sample_reference(x, positions, groups, padding_mode)
    dtype = torch.promote_types(x.dtype, positions.dtype)
    height, width = x.shape[-2:]
    scale = 2 / torch.tensor([width, height], dtype=dtype, device=x.device)
    shift = torch.full((), -1, dtype=dtype, device=x.device)
    return PointSample.apply(x, positions, shift, scale, groups, padding_mode, None,
                             sampling_kernel(chosen))


def pixel_centres(height: int, width: int, dtype: torch.dtype, device) -> Tensor:
    """Centres ``(c + 0.5, r + 0.5)`` of an H x W grid, shaped (H, 1, W, 1, 2) to broadcast over
    the sub-pixel dimensions of :func:`subpixel_positions`."""
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5
    centres = torch.stack(torch.broadcast_tensors(cols[None, :], rows[:, None]), dim=-1)
    return centres.view(height, 1, width, 1, 2)


def check_subpixel_offsets(offsets: Tensor, scale_factor: int, size: Sequence[int]) -> None:
    """Shape contract of :func:`subpixel_positions` (names the offending argument)."""
    if offsets.dim() < 5 or offsets.shape[-1] != 2 or \
            any(offsets.shape[dim] not in (1, scale_factor) for dim in (-4, -2)):
        raise ValueError(f'offsets must have shape (..., H, s or 1, W, s or 1, 2) with '
                         f's=scale_factor={scale_factor}, got {tuple(offsets.shape)}')
    height, width = offsets.shape[-5], offsets.shape[-3]
    if size[0] > scale_factor * height or size[1] > scale_factor * width:
        raise ValueError(f'size={tuple(size)} exceeds scale_factor={scale_factor} x the offsets\' '
                         f'low-resolution grid {height}x{width}')


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
    check_subpixel_offsets(offsets, scale_factor, size)
    height, width = offsets.shape[-5], offsets.shape[-3]
    out_height, out_width = size
    dtype = torch.promote_types(offsets.dtype, torch.float32)
    positions = offsets.to(dtype) + pixel_centres(height, width, dtype, offsets.device)
    leading = positions.shape[:-5]
    positions = positions.expand(*leading, height, scale_factor, width, scale_factor, 2)
    positions = positions.reshape(*leading, height * scale_factor, width * scale_factor, 2)
    return positions[..., :out_height, :out_width, :]



def subpixel_point_sample(x: Tensor, offsets: Tensor, scale_factor: int, size: Sequence[int],
                          groups: int, padding_mode: str = 'zeros',
                          initial: Optional[Tensor] = None, offset_scale: float = 1.0,
                          impl: Optional[str] = None) -> Tensor:
    """:func:`point_sample` of ``x`` at :func:`subpixel_positions` ``(initial + offset_scale *
    offsets, scale_factor, size)``, with all that arithmetic fused into the sampling on the fast
    path (one pass builds the grid, one pass maps its gradient back to ``offsets``).

    Args:
        x: (B, C, H_x, W_x) feature to read (positions in its pixels).
        offsets: (B, G, *lead, H, s or 1, W, s or 1, 2), any strides (e.g. a permuted view of a
            convolution's output): see :func:`subpixel_positions`.
        scale_factor, size: s and the output size ``(oH, oW)``.
        groups, padding_mode, impl: as :func:`point_sample`.
        initial: constant offsets broadcastable to ``offsets`` (DySample's ``init_pos``), not
            differentiated (a tensor that requires grad is refused).
        offset_scale: factor of ``offsets`` (DySample's static scope 0.25).

    Returns:
        (B, G, C / G, *lead, oH, oW) in the dtype of ``x``.
    """
    check_subpixel_offsets(offsets, scale_factor, size)
    check_point_sample_arguments(x, offsets, groups, padding_mode)
    if initial is not None and initial.requires_grad:
        raise ValueError('initial must not require grad (it is a constant such as a buffer); '
                         'add a learned shift to offsets instead')
    chosen = point_sample_implementation(impl, x, offsets)
    if chosen == 'reference':
        positions = subpixel_sampling_positions(offsets, scale_factor, size, initial,
                                                offset_scale)
        return point_sample_reference(x, positions, groups, padding_mode)
    dtype = torch.promote_types(torch.promote_types(offsets.dtype, torch.float32), x.dtype)
    height, width = x.shape[-2:]
    scale = 2 / torch.tensor([width, height], dtype=dtype, device=x.device)
    centres = pixel_centres(offsets.shape[-5], offsets.shape[-3], dtype, x.device)
    if initial is not None:
        centres = centres + initial.to(dtype)
    shift = torch.addcmul(torch.full((), -1, dtype=dtype, device=x.device), centres, scale)
    return PointSample.apply(x, offsets, shift, scale * offset_scale, groups, padding_mode,
                             (scale_factor, tuple(size)), sampling_kernel(chosen))


def subpixel_sampling_positions(offsets: Tensor, scale_factor: int, size: Sequence[int],
                                initial: Optional[Tensor] = None,
                                offset_scale: float = 1.0) -> Tensor:
    """The positions (B, G, *lead, oH, oW, 2) that :func:`subpixel_point_sample` reads, in plain
    ops (its reference; also what visualisations show)."""
    shifted = offsets * offset_scale if offset_scale != 1 else offsets
    if initial is not None:
        shifted = shifted + initial
    return subpixel_positions(shifted, scale_factor, size)


def point_sample_implementation(impl: Optional[str], x: Tensor, positions: Tensor) -> str:
    """:func:`~mmdynup.ops.dispatch.resolve_implementation` for point sampling, except that a
    reference chosen implicitly (``'auto'`` under ``torch.compile``) gives way to
    :class:`PointSample` where the reference's backward would raise: gradients on CUDA in
    deterministic mode (:func:`sampling_backward`). An explicit ``'reference'``, and ONNX export
    or ``torch.jit`` tracing (which need the plain ops), keep the reference."""
    chosen = resolve_implementation(impl, x, positions, native=True)
    if chosen == 'triton' and (impl if impl is not None else active_implementation()) != 'triton':
        # The Triton point-sampling kernels run only when asked for by name: 'auto' keeps
        # ATen's CUDA kernels until the Triton ones are measured on a GPU (tools/gpu_check.py).
        return 'tiled'
    if chosen != 'reference' or impl == 'reference':
        return chosen
    if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return chosen
    if impl is None and not is_compiling() and active_implementation() == 'reference':
        return chosen
    wants_grad = torch.is_grad_enabled() and (x.requires_grad or positions.requires_grad)
    if wants_grad and sampling_backward(x.device) == 'deterministic':
        return 'tiled'
    return chosen


def sampling_kernel(implementation: str) -> str:
    """The sampling kernel :class:`PointSample` runs for a resolved implementation: ``'native'``
    (the C++ CPU kernel), ``'triton'`` (:class:`~mmdynup.ops.triton_kernels.TritonPointSampling`)
    or ``'aten'`` (``grid_sampler_2d``, for ``'tiled'``)."""
    return implementation if implementation in ('native', 'triton') else 'aten'


def sampling_backward(device) -> str:
    """The backward kernel :class:`PointSample` runs on ``device``, one of
    :data:`SAMPLING_BACKWARDS`: ``'deterministic'`` (:func:`deterministic_sampling_backward`) on
    CUDA while ``torch.are_deterministic_algorithms_enabled()``, where ATen's grid-sampler
    backward has no deterministic kernel (pytorch issue 68959); else ``'fused'``, ATen's kernel
    (deterministic on the CPU, where each thread owns whole images)."""
    if torch.device(device).type == 'cuda' and torch.are_deterministic_algorithms_enabled():
        return 'deterministic'
    return 'fused'


def grid_pixel_scale(grid: Tensor, height: int, width: int) -> Tensor:
    """``(W / 2, H / 2)``: d position in pixels / d normalised grid component."""
    return grid.new_tensor([width / 2, height / 2])


def grid_pixels(grid: Tensor, height: int, width: int) -> Tensor:
    """Normalised ``align_corners=False`` grid points (..., 2) as positions in pixels (centres
    at ``k + 0.5``, the convention of :func:`point_sample`): ``(g + 1) * size / 2``."""
    return (grid + 1) * grid_pixel_scale(grid, height, width)


def grid_pixel_coordinates(grid: Tensor, height: int, width: int,
                     padding_mode: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Pixel coordinates of normalised ``align_corners=False`` grid points, as ATen computes them.

    Args:
        grid: (..., 2) normalised ``(x, y)`` in [-1, 1] for the image span.
        height, width: the image size.
        padding_mode: ``'border'`` clamps the coordinates to ``[0, size - 1]``.

    Returns:
        ``(left, top, fraction_x, fraction_y, d_u, d_v)``: the top-left corner (int64, may lie
        outside), the fractional parts, and the derivatives of the pixel coordinates u, v by the
        grid components (``size / 2``, 0 where border padding clamped them, as in ATen).
    """
    u = ((grid[..., 0] + 1) * width - 1) / 2
    v = ((grid[..., 1] + 1) * height - 1) / 2
    d_u = torch.full_like(u, width / 2)
    d_v = torch.full_like(v, height / 2)
    if padding_mode == 'border':
        d_u = d_u * ((u > 0) & (u < width - 1))
        d_v = d_v * ((v > 0) & (v < height - 1))
        u, v = u.clamp(0, width - 1), v.clamp(0, height - 1)
    left, top = u.floor(), v.floor()
    return left.long(), top.long(), u - left, v - top, d_u, d_v


def deterministic_sampling_backward(grad_out: Tensor, features: Tensor, grid: Tensor,
                                    padding_mode: str, input_grad: bool = True
                                    ) -> Tuple[Optional[Tensor], Tensor]:
    """Gradients of ``torch.grid_sampler_2d(features, grid)`` (bilinear, ``align_corners=False``)
    in plain PyTorch ops that run deterministically under
    ``torch.use_deterministic_algorithms(True)`` on every device: per interpolation corner one
    ``index_select`` and one ``index_add_`` over channel-last rows.

    Args:
        grad_out: (N, c, P, Q) upstream gradient.
        features: (N, c, H, W) the sampled image.
        grid: (N, P, Q, 2) normalised positions.
        padding_mode: ``'zeros'`` or ``'border'``.
        input_grad: whether to compute the features' gradient.

    Returns:
        ``(grad_features or None, grad_grid)`` shaped like ``features`` and ``grid``.
    """
    batch, channels, height, width = features.shape
    points = grid.shape[1] * grid.shape[2]
    left, top, fraction_x, fraction_y, d_u, d_v = grid_pixel_coordinates(
        grid.reshape(batch, points, 2), height, width, padding_mode)
    # Channel-last rows: row (n, pixel) of the image, row (n, point) of the upstream gradient.
    rows = features.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    grad_rows = grad_out.reshape(batch, channels, points).transpose(1, 2).reshape(-1, channels)
    image_start = (torch.arange(batch, device=grid.device) * (height * width)).view(batch, 1)
    grad_image_rows = torch.zeros_like(rows) if input_grad else None
    dots = []  # sum_c grad_out * corner value, per point, corners (0, 0), (1, 0), (0, 1), (1, 1)
    for step_y in (0, 1):
        for step_x in (0, 1):
            column, row = left + step_x, top + step_y
            inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
            index = (image_start + row.clamp(0, height - 1) * width
                     + column.clamp(0, width - 1)).flatten()
            weight = ((fraction_x if step_x else 1 - fraction_x)
                      * (fraction_y if step_y else 1 - fraction_y) * inside)
            if input_grad:
                grad_image_rows.index_add_(0, index, grad_rows * weight.view(-1, 1))
            dots.append((rows.index_select(0, index) * grad_rows).sum(1).view(batch, points)
                        * inside)
    top_left, top_right, bottom_left, bottom_right = dots
    grad_u = (top_right - top_left) * (1 - fraction_y) + (bottom_right - bottom_left) * fraction_y
    grad_v = (bottom_left - top_left) * (1 - fraction_x) + (bottom_right - top_right) * fraction_x
    grad_grid = torch.stack([grad_u * d_u, grad_v * d_v], dim=-1).view(grid.shape)
    grad_features = None
    if input_grad:
        grad_features = grad_image_rows.view(batch, height, width, channels).permute(0, 3, 1, 2)
        grad_features = grad_features.contiguous()
    return grad_features, grad_grid


def sole_owner(tensor: Tensor) -> Tensor:
    """``tensor`` no longer tracked as a view of its base (same storage; the caller drops its
    other references).

    The autograd engine adds a later gradient into the first one in place only when the first
    is the sole owner of its storage; a view shares it with its base, which would make the sum
    of x's two gradients (DySample: sampling + offset convolution) a third x-sized buffer."""
    return tensor.detach() if tensor._base is not None else tensor


def subpixel_block(grid: Tensor, block_shape: Sequence[int]) -> Tensor:
    """A (…, oH, oW, 2) grid (gradient) as the (…, H, s, W, s, 2) block of ``block_shape``,
    zero outside the top-left window it covers."""
    *lead, height, s, width, _, _ = block_shape
    if tuple(grid.shape[-3:-1]) == (height * s, width * s):
        return grid.view(block_shape)
    block = grid.new_zeros(block_shape)
    block.view(*lead, height * s, width * s, 2)[..., :grid.shape[-3], :grid.shape[-2], :] = grid
    return block


def offsets_gradient(grad_grid: Tensor, scale: Tensor, shape: Sequence[int],
                     stride: Sequence[int], dtype: torch.dtype) -> Tensor:
    """``grad_grid * scale`` summed to the offsets' ``shape``, written in the offsets' memory
    layout (``stride``) when that layout is dense: a permuted view of a convolution output then
    gets its gradient back in the convolution's layout, with no copy in the view's backward."""
    if tuple(grad_grid.shape) == tuple(shape) and dtype == grad_grid.dtype \
            and is_permuted_contiguous(shape, stride):
        out = torch.empty_strided(shape, stride, dtype=dtype, device=grad_grid.device)
        return torch.mul(grad_grid, scale, out=out)
    return (grad_grid * scale).sum_to_size(shape).to(dtype)


def is_permuted_contiguous(shape: Sequence[int], stride: Sequence[int]) -> bool:
    """Whether ``stride`` lays ``shape`` out as a permutation of a contiguous tensor."""
    expected = 1
    for step, length in sorted((step, length) for length, step in zip(shape, stride)
                               if length != 1):
        if step != expected:
            return False
        expected *= length
    return True


class PointSample(torch.autograd.Function):
    """Fast path of :func:`point_sample` / :func:`subpixel_point_sample` (module docstring).

    Positions are ``shift + scale * offsets`` in normalised grid units: for :func:`point_sample`
    ``offsets`` are the positions, ``scale = 2 / (W, H)`` and ``shift = -1``; for
    :func:`subpixel_point_sample` ``shift`` adds the parent centres and ``subpixel = (s, size)``
    lays the (…, H, s, W, s, 2) block out as the (…, oH, oW, 2) grid. ``shift``'s dtype is the
    working dtype. ``kernel`` (:func:`sampling_kernel`): ``'native'`` samples with the C++ CPU
    kernel of :mod:`mmdynup.ops.native` on a (B, H, W, C) channels-last copy of the image (saved
    instead of the image; the image gradient comes back channels-last, without a copy),
    ``'triton'`` with the Triton kernels (positions in pixels, made from the grid), ``'aten'``
    with ``grid_sampler_2d``. Saves the (converted) image and the grid.
    """

    @staticmethod
    def forward(ctx, x: Tensor, offsets: Tensor, shift: Tensor, scale: Tensor, groups: int,
                padding_mode: str, subpixel: Optional[Tuple[int, Tuple[int, int]]],
                kernel: str = 'aten') -> Tensor:
        batch, channels, height, width = x.shape
        dtype = shift.dtype
        with autocast_disabled(x.device.type):
            full_shape = torch.broadcast_shapes(offsets.shape, shift.shape)
            if subpixel is not None:  # shared sub-pixel offsets fill their whole s x s block
                s, (out_height, out_width) = subpixel
                full_shape = (*full_shape[:-4], s, full_shape[-3], s, 2)
            grid = torch.empty(full_shape, dtype=dtype, device=x.device)
            torch.addcmul(shift, offsets.to(dtype).expand(full_shape), scale, out=grid)
            if subpixel is not None:
                grid = grid.view(*full_shape[:-5], full_shape[-5] * s, full_shape[-3] * s, 2)
                grid = grid[..., :out_height, :out_width, :]
            points = grid.shape[2:-1]
            grid = grid.reshape(batch * groups, -1, points[-1], 2)
            if kernel == 'native':
                # (B, H, W, C) planes: image (b, g) is a channel slice of every row.
                features = channels_last_planes(x, dtype)
                grid = grid.contiguous()
                out = native_module(required=True).grid_sample_forward(
                    features, grid.view(grid.shape[0], -1, 2), groups, padding_mode == 'border')
            else:
                features = x.reshape(batch * groups, channels // groups, height, width).to(dtype)
                if kernel == 'triton':
                    out = triton_kernels().TritonPointSampling.sample(
                        features, grid_pixels(grid, height, width).unsqueeze(1), 1, padding_mode)
                else:
                    out = torch.grid_sampler_2d(features, grid, BILINEAR,
                                                PADDING_CODES[padding_mode], False)
        ctx.save_for_backward(features, grid, scale)
        ctx.layout = (x.shape, x.dtype, offsets.shape, offsets.stride(), offsets.dtype,
                      full_shape, points, padding_mode, subpixel, kernel)
        return out.view(batch, groups, channels // groups, *points).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        features, grid, scale = ctx.saved_tensors
        (x_shape, x_dtype, offsets_shape, offsets_stride, offsets_dtype, full_shape, points,
         padding_mode, subpixel, kernel) = ctx.layout
        need_x, need_offsets = ctx.needs_input_grad[:2]
        with autocast_disabled(grad_out.device.type):
            if kernel == 'native':
                grad = grad_out.reshape(grid.shape[0], -1, grid.shape[1] * grid.shape[2])
                groups = grid.shape[0] // features.shape[0]
                grad_planes, grad_grid = native_module(required=True).grid_sample_backward(
                    grad.to(features.dtype).contiguous(), features,
                    grid.view(grid.shape[0], -1, 2), groups, padding_mode == 'border', need_x)
                # (B, H, W, C) planes as a channels-last (B, C, H, W) tensor: no copy.
                grad_features = grad_planes.permute(0, 3, 1, 2) if need_x else None
                del grad_planes
            else:
                grad = grad_out.reshape(features.shape[:2] + grid.shape[1:3]).to(features.dtype)
                if sampling_backward(grad.device) == 'deterministic':
                    grad_features, grad_grid = deterministic_sampling_backward(
                        grad, features, grid, padding_mode, need_x)
                elif kernel == 'triton':
                    height, width = features.shape[-2:]
                    grad_features, grad_pixels = triton_kernels().TritonPointSampling.gradients(
                        grad.unsqueeze(1), features, grid_pixels(grid, height, width).unsqueeze(1),
                        1, padding_mode, need_x)
                    grad_grid = grad_pixels.squeeze(1) * grid_pixel_scale(grid, height, width)
                else:
                    grad_features, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
                        grad, features, grid, BILINEAR, PADDING_CODES[padding_mode], False,
                        [need_x, True])
            grad_x = grad_offsets = None
            if need_x:
                grad_x = sole_owner(grad_features.reshape(x_shape).to(x_dtype))
                del grad_features
            if need_offsets:
                grad_grid = grad_grid.view(*full_shape[:2], *points, 2)
                if subpixel is not None:
                    grad_grid = subpixel_block(grad_grid, full_shape)
                grad_offsets = offsets_gradient(grad_grid, scale, offsets_shape, offsets_stride,
                                                offsets_dtype)
        return grad_x, grad_offsets, None, None, None, None, None, None


def bilinear_resize(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """``F.interpolate(x, size, mode='bilinear', align_corners=align_corners)`` whose backward
    stays deterministic: where :func:`sampling_backward` asks for it (CUDA in deterministic mode,
    in which ``F.interpolate``'s bilinear backward raises) and a gradient is needed, the same
    resize runs as :func:`point_sample` at the interpolation's source positions (border
    padding clamps them as ``F.interpolate`` clamps its source indices); else ``F.interpolate``.

    Args:
        x: (B, C, H, W).
        size: the output size ``(oH, oW)``.
        align_corners: ``F.interpolate``'s.

    Returns:
        (B, C, oH, oW).
    """
    wants_grad = torch.is_grad_enabled() and x.requires_grad
    if not wants_grad or sampling_backward(x.device) != 'deterministic' or is_exporting():
        return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=align_corners)
    dtype = torch.promote_types(x.dtype, torch.float32)
    steps = []
    for length, out_length in zip(x.shape[-2:], size):
        index = torch.arange(out_length, dtype=dtype, device=x.device)
        if align_corners:  # source index i (in - 1) / (out - 1), a lone output pixel reads 0
            ratio = (length - 1) / (out_length - 1) if out_length > 1 else 0.0
            steps.append(index * ratio + 0.5)
        else:  # source index (i + 0.5) in / out - 0.5, as a position + 0.5
            steps.append((index + 0.5) * (length / out_length))
    rows, cols = steps
    positions = torch.stack(torch.broadcast_tensors(cols[None, :], rows[:, None]), dim=-1)
    positions = positions.expand(x.shape[0], 1, *positions.shape)
    return point_sample(x, positions, 1, 'border', impl='tiled').view(*x.shape[:2], *size)
