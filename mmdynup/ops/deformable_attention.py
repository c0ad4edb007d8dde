"""Local deformable attention: every output pixel attends to P points of a low-resolution
key/value map, read by bilinear interpolation at its own learned positions (LDA-AQU, Du et al.,
ACM MM 2024, "LDA-AQU: Adaptive Query-guided Upsampling via Local Deformable Attention";
code: duzw9311/LDA-AQU ``mmdet/models/necks/fpn_lau.py``, class ``LDA_AQU``).

For output pixel n, head h (a contiguous chunk of D / heads key channels and of C / heads value
channels) and point p, with ``K_p`` / ``V_p`` the key and value maps sampled at point p's
positions (:func:`~mmdynup.ops.point_sampling.point_sample`, zero padding):

    logit[h, p, n] = scale * sum_{d in h} query[d, n] * (K_p[d, n] + key_bias[h, p, d])
    attn[h, :, n]  = softmax over the P points of logit[h, :, n]
    out[c, n]      = sum_p attn[head(c), p, n] * V_p[c, n]

Positions come per offset group (contiguous chunks of D / G key and C / G value channels, the
same positions for both); groups and heads split the channels independently.

Implementations (chosen by :mod:`mmdynup.ops.dispatch`):

* :func:`local_deformable_attention_reference` - the specification: samples all P points at once,
  materialising (B, C, P, oH, oW) values and (B, D, P, oH, oW) keys, P times the output.
* :class:`LocalDeformableAttention` (``'tiled'``; also what ``'triton'`` runs, there is no Triton
  kernel for this op) - pure PyTorch, any device: one point at a time. The forward keeps only the
  (B, heads, P, oH, oW) attention weights and accumulates the output point by point; the backward
  re-samples each point (two ``grid_sample`` calls and their backward per point) instead of saving
  the P sampled maps. Besides inputs and output it allocates one sampled value map and one
  sampled key map at a time. Runs when heads and offset groups split the channels differently.
* :class:`FusedDeformableAttention` (same names, when ``num_heads`` equals the offset groups, as
  in SAPA-deform) - weighted row sums (``embedding_bag``) of channels-last key / value planes
  per (batch, group, tile of output rows); no sampled map of all points, backward recomputes.
* :class:`NativeDeformableAttention` (``'native'``, the default on CPU when the C++ kernels of
  :mod:`mmdynup.ops.native` build) - one C++ pass over the pixels forward, two backward; any
  heads and groups; deterministic.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .dispatch import autocast_disabled, autocast_inputs, native_module, resolve_implementation
from .native import channels_last_planes
from .point_sampling import point_sample
from .reassembly import GPU_TILE_ELEMENTS, compute_dtype


def check_deformable_attention_arguments(query: Tensor, key: Tensor, value: Tensor,
                                         positions: Tensor, num_heads: int,
                                         key_bias: Optional[Tensor]) -> None:
    """Shape contract at the op boundary (names the offending argument)."""
    for name, tensor in (('query', query), ('key', key), ('value', value)):
        if tensor.dim() != 4:
            raise ValueError(f'{name} must be 4-D, got shape {tuple(tensor.shape)}')
    batch, dim, out_h, out_w = query.shape
    if key.shape[:2] != (batch, dim):
        raise ValueError(f'key must be (B={batch}, D={dim}, H, W) like query, got '
                         f'{tuple(key.shape)}')
    if value.shape[0] != batch or value.shape[-2:] != key.shape[-2:]:
        raise ValueError(f'value must be (B={batch}, C, {key.shape[2]}, {key.shape[3]}) like key, '
                         f'got {tuple(value.shape)}')
    if positions.dim() != 6 or positions.shape[0] != batch or positions.shape[-1] != 2 \
            or tuple(positions.shape[3:5]) != (out_h, out_w):
        raise ValueError(f'positions must be (B={batch}, G, P, {out_h}, {out_w}, 2), got '
                         f'{tuple(positions.shape)}')
    groups, points = positions.shape[1:3]
    channels = value.shape[1]
    for name, size in (('D (query/key channels)', dim), ('C (value channels)', channels)):
        if size % groups or size % num_heads:
            raise ValueError(f'{name}={size} must be divisible by the {groups} offset groups and '
                             f'by num_heads={num_heads}')
    if key_bias is not None and tuple(key_bias.shape) != (num_heads, points, dim // num_heads):
        raise ValueError(f'key_bias must be (num_heads={num_heads}, P={points}, '
                         f'D / num_heads={dim // num_heads}), got {tuple(key_bias.shape)}')


def _heads(tensor: Tensor, num_heads: int) -> Tensor:
    """(B, C, *rest) -> (B, heads, C / heads, prod(rest)): the channel chunk of every head."""
    return tensor.reshape(tensor.shape[0], num_heads, tensor.shape[1] // num_heads, -1)


def local_deformable_attention_reference(query: Tensor, key: Tensor, value: Tensor,
                                         positions: Tensor, num_heads: int, scale: float,
                                         key_bias: Optional[Tensor] = None) -> Tensor:
    """Plain PyTorch local deformable attention (the specification; see the module docstring).

    Args:
        query: (B, D, oH, oW), one query per output pixel.
        key: (B, D, H, W) and value: (B, C, H, W), the low-resolution maps the points read.
        positions: (B, G, P, oH, oW, 2) positions ``(x, y)`` in pixels of ``key`` / ``value``
            (centres at ``k + 0.5``, the convention of :mod:`mmdynup.ops.point_sampling`); group g
            reads key channels ``[g D / G, (g + 1) D / G)`` and value channels likewise.
        num_heads: heads; head h owns key channels ``[h D / heads, ...)`` and value channels
            ``[h C / heads, ...)``.
        scale: factor on the logits (LDA-AQU: ``(D / heads) ** -0.5``).
        key_bias: optional (heads, P, D / heads) bias added to the sampled keys of each point.

    Returns:
        (B, C, oH, oW).
    """
    check_deformable_attention_arguments(query, key, value, positions, num_heads, key_bias)
    batch, _, out_h, out_w = query.shape
    groups, points = positions.shape[1:3]
    # (B, G, D / G, P, oH, oW) -> (B, heads, D / heads, P, oH * oW): channel order is unchanged.
    keys = point_sample(key, positions, groups).reshape(batch, num_heads, -1, points, out_h * out_w)
    if key_bias is not None:
        keys = keys + key_bias.transpose(1, 2).unsqueeze(-1)
    logits = torch.einsum('bhdn,bhdpn->bhpn', _heads(query, num_heads) * scale, keys)
    values = point_sample(value, positions, groups).reshape(batch, num_heads, -1, points,
                                                            out_h * out_w)
    # Softmax in at least float32 (16-bit logits too), weights in the values' dtype.
    attention = logits.softmax(dim=2, dtype=torch.promote_types(logits.dtype, torch.float32))
    attention = attention.to(values.dtype)
    out = torch.einsum('bhpn,bhcpn->bhcn', attention, values)
    return out.reshape(batch, -1, out_h, out_w)


class _PointSampler:
    """Samples one point of every pixel, and back-propagates through that sampling, one point at
    a time (the recomputation the fast backward relies on)."""

    def __init__(self, positions: Tensor, groups: int) -> None:
        self.positions, self.groups = positions, groups

    def sample(self, feature: Tensor, point: int) -> Tensor:
        """(B, C, H, W) -> (B, C, oH * oW): ``feature`` at point ``point`` of every pixel."""
        sampled = point_sample(feature, self.positions[:, :, point], self.groups)
        return sampled.reshape(feature.shape[0], feature.shape[1], -1)

    def backward(self, feature: Tensor, point: int, grad_sampled: Tensor,
                 need_feature: bool, need_positions: bool) -> Tuple[Optional[Tensor], ...]:
        """Re-samples point ``point`` and returns it with the gradients of ``feature`` and of the
        point's positions (None where not needed) for the upstream gradient ``grad_sampled``
        (B, C, oH * oW)."""
        with torch.enable_grad():
            leaf = feature.detach().requires_grad_(need_feature)
            where = self.positions[:, :, point].detach().requires_grad_(need_positions)
            sampled = point_sample(leaf, where, self.groups).reshape(grad_sampled.shape)
            grad_sampled = grad_sampled.to(sampled.dtype)
            wanted = [tensor for tensor, need in ((leaf, need_feature), (where, need_positions))
                      if need]
            grads = iter(torch.autograd.grad(sampled, wanted, grad_sampled) if wanted else ())
        return (sampled.detach(), next(grads) if need_feature else None,
                next(grads) if need_positions else None)


class LocalDeformableAttention(torch.autograd.Function):
    """The point-by-point fast path; inputs as :func:`local_deformable_attention_reference`."""

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor, positions: Tensor,
                key_bias: Optional[Tensor], num_heads: int, scale: float) -> Tensor:
        batch, _, out_h, out_w = query.shape
        groups, points = positions.shape[1:3]
        sampler = _PointSampler(positions, groups)
        query_heads = _heads(query, num_heads) * scale
        # Logits, softmax and the output sum run in at least float32 (as autocast's softmax).
        accumulate = torch.promote_types(value.dtype, torch.float32)
        logits = query.new_empty(batch, num_heads, points, out_h * out_w, dtype=accumulate)
        for point in range(points):
            keys = _heads(sampler.sample(key, point), num_heads)
            if key_bias is not None:
                keys = keys + key_bias[:, point].unsqueeze(-1)
            logits[:, :, point] = (query_heads * keys).sum(dim=2)
        attention = logits.softmax(dim=2)
        out = value.new_zeros(batch, num_heads, value.shape[1] // num_heads, out_h * out_w,
                              dtype=accumulate)
        for point in range(points):
            values = _heads(sampler.sample(value, point), num_heads)
            out.addcmul_(attention[:, :, point].unsqueeze(2), values)
        ctx.save_for_backward(query, key, value, positions, key_bias, attention)
        ctx.num_heads, ctx.scale = num_heads, scale
        return out.reshape(batch, -1, out_h, out_w).to(value.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        query, key, value, positions, key_bias, attention = ctx.saved_tensors
        num_heads, scale = ctx.num_heads, ctx.scale
        need_query, need_key, need_value, need_positions, need_bias = ctx.needs_input_grad[:5]
        groups, points = positions.shape[1:3]
        sampler = _PointSampler(positions, groups)
        # Gradients summed over the points accumulate in at least float32, cast back at the end.
        accumulate = torch.promote_types(value.dtype, torch.float32)
        with autocast_disabled(query.device.type):
            grad_heads = _heads(grad_out, num_heads)
            grad_value = torch.zeros_like(value, dtype=accumulate) if need_value else None
            grad_positions = torch.zeros_like(positions) if need_positions else None
            # Values: out = sum_p attn_p V_p, so dL/dattn_p = <g, V_p> and dL/dV_p = attn_p g.
            grad_attention = torch.empty_like(attention)
            for point in range(points):
                weight = attention[:, :, point].unsqueeze(2)
                values, grad_v, grad_p = sampler.backward(
                    value, point, (weight * grad_heads).reshape(grad_out.shape[0], -1,
                                                                grad_heads.shape[-1]),
                    need_value, need_positions)
                grad_attention[:, :, point] = (_heads(values, num_heads) * grad_heads).sum(2)
                if need_value:
                    grad_value += grad_v
                if need_positions:
                    grad_positions[:, :, point] += grad_p
            # Softmax over the points, then the scale of the logits.
            grad_logits = attention * (grad_attention
                                       - (attention * grad_attention).sum(dim=2, keepdim=True))
            grad_logits *= scale
            query_heads = _heads(query, num_heads)
            grad_query = torch.zeros_like(query_heads, dtype=accumulate) if need_query else None
            grad_key = torch.zeros_like(key, dtype=accumulate) if need_key else None
            grad_bias = torch.zeros_like(key_bias, dtype=accumulate) if need_bias else None
            for point in range(points):
                weight = grad_logits[:, :, point].unsqueeze(2)
                grad_keys = weight * query_heads  # (B, heads, D / heads, N)
                if need_bias:
                    grad_bias[:, point] = grad_keys.sum(dim=(0, 3))
                if not (need_query or need_key or need_positions):
                    continue
                keys, grad_k, grad_p = sampler.backward(
                    key, point, grad_keys.reshape(key.shape[0], key.shape[1], -1),
                    need_key, need_positions)
                if need_query:
                    keys = _heads(keys, num_heads)
                    if key_bias is not None:
                        keys = keys + key_bias[:, point].unsqueeze(-1)
                    grad_query.addcmul_(weight, keys)
                if need_key:
                    grad_key += grad_k
                if need_positions:
                    grad_positions[:, :, point] += grad_p
        grads = [grad_query.reshape(query.shape) if need_query else None, grad_key, grad_value,
                 grad_positions, grad_bias]
        like = (query, key, value, positions, key_bias)
        return (*(None if grad is None else grad.to(tensor.dtype)
                  for grad, tensor in zip(grads, like)), None, None)


# --- fused path: one head per offset group ------------------------------------------------------

#: Elements of a fused-path tile's largest temporary (three sampled maps, P points x channels
#: per pixel) per CPU thread: tiles then reuse heap blocks instead of page-faulting fresh ones.
BAG_TILE_ELEMENTS = 1 << 21
#: Corner offsets (top-left, top-right, bottom-left, bottom-right) in a zero-bordered plane of
#: width ``W + 2``, as multiples of (1, row).
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def bordered_planes(feature: Tensor, groups: int, dtype: torch.dtype) -> Tensor:
    """(B, C, H, W) -> (B, G, (H + 2) * (W + 2), C / G): each group channels-last with a one-pixel
    zero border, so every corner of a point within a pixel of the image is a row (one copy)."""
    batch, channels, height, width = feature.shape
    planes = feature.new_zeros(batch, groups, height + 2, width + 2, channels // groups,
                               dtype=dtype)
    planes[:, :, 1:-1, 1:-1].copy_(
        feature.unflatten(1, (groups, channels // groups)).permute(0, 1, 3, 4, 2))
    return planes.flatten(2, 3)


def unbordered(planes: Tensor, height: int, width: int, dtype: torch.dtype) -> Tensor:
    """Inverse layout of :func:`bordered_planes` (the border dropped): (B, C, H, W)."""
    batch, groups, _, group_channels = planes.shape
    inner = planes.view(batch, groups, height + 2, width + 2, group_channels)[:, :, 1:-1, 1:-1]
    return inner.permute(0, 1, 4, 2, 3).reshape(batch, groups * group_channels, height,
                                                width).to(dtype)


def bilinear_corners(positions: Tensor, height: int, width: int, dtype: torch.dtype,
                     derivatives: bool = False) -> Tuple[Tensor, ...]:
    """Corners and weights of zero-padded bilinear sampling (``grid_sample``'s arithmetic).

    Args:
        positions: (..., 2) positions ``(x, y)`` in pixels of an H x W map (centres ``k + 0.5``).
        dtype: dtype of the weights.
        derivatives: also return the weights' derivatives by x and by y.

    Returns:
        ``(index, weights[, d_dx, d_dy])``: index (...) the row of the top-left corner in a
        :func:`bordered_planes` plane (corners ``index + {0, 1, W + 2, W + 3}``), weights and
        derivatives (..., 4) in corner order; zero for a point with no corner in the image.
    """
    column, row = (positions[..., 0] - 0.5).to(dtype), (positions[..., 1] - 0.5).to(dtype)
    left, top = column.floor(), row.floor()
    right_weight, bottom_weight = column - left, row - top
    left_weight, top_weight = 1 - right_weight, 1 - bottom_weight
    near = ((left >= -1) & (left <= width - 1) & (top >= -1) & (top <= height - 1)).to(dtype)
    index = ((top.clamp(-1, height - 1) + 1) * (width + 2)
             + left.clamp(-1, width - 1) + 1).long()
    weights = torch.stack([left_weight * top_weight, right_weight * top_weight,
                           left_weight * bottom_weight, right_weight * bottom_weight], dim=-1)
    weights *= near.unsqueeze(-1)
    if not derivatives:
        return index, weights
    d_dx = torch.stack([-top_weight, top_weight, -bottom_weight, bottom_weight], dim=-1)
    d_dy = torch.stack([-left_weight, -right_weight, left_weight, right_weight], dim=-1)
    return index, weights, d_dx * near.unsqueeze(-1), d_dy * near.unsqueeze(-1)


def corner_rows(index: Tensor, width: int) -> Tensor:
    """(...) top-left rows -> (..., 4) rows of the four corners in a bordered plane."""
    steps = index.new_tensor([dy * (width + 2) + dx for dy, dx in _CORNERS])
    return index.unsqueeze(-1) + steps


def weighted_rows(plane: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
    """``sum_j weights[n, j] * plane[rows[n, j]]``: (N, J) rows and weights -> (N, channels)
    (``embedding_bag``: the rows are read in place, nothing of size N x J x channels)."""
    return F.embedding_bag(rows, plane, per_sample_weights=weights, mode='sum')


class CornerScatter:
    """The adjoint of :func:`weighted_rows` over the four corners of every point:
    ``target[corner c of index[n, p]] += weights[n, p, c] * source[n]``.

    Built once per tile from the (N, P) top-left rows: the entries are sorted by row (stable, so
    the summation order is fixed) and every touched row gathers its contributions with one
    ``embedding_bag`` per corner over the span of touched rows; :meth:`add` then adds four
    shifted slices to the plane (no scatter kernel, and the sort serves keys and values).
    """

    def __init__(self, index: Tensor, width: int) -> None:
        flat = index.flatten()
        self.order = flat.argsort(stable=True)
        ordered = flat[self.order]
        self.low = int(ordered[0])
        self.span = int(ordered[-1]) - self.low + 1
        device = flat.device
        bounds = torch.searchsorted(ordered, torch.arange(self.low, self.low + self.span,
                                                          device=device))
        self.offsets = (bounds + torch.arange(4, device=device).unsqueeze(1)
                        * flat.numel()).flatten()
        self.sources = torch.div(self.order, index.shape[1], rounding_mode='floor').repeat(4)
        self.starts = [self.low + dy * (width + 2) + dx for dy, dx in _CORNERS]

    def add(self, target: Tensor, weights: Tensor, source: Tensor) -> None:
        """target (rows, channels) += the scatter of weights (N, P, 4) times source (N, channels)."""
        corner_weights = weights.reshape(-1, 4)[self.order].t().flatten()
        sums = F.embedding_bag(self.sources, source, self.offsets,
                               per_sample_weights=corner_weights, mode='sum')
        for corner, start in enumerate(self.starts):
            target[start:start + self.span] += sums[corner * self.span:(corner + 1) * self.span]


def corner_dots(plane: Tensor, corners: Tensor, vectors: Tensor, buffer: Tensor) -> Tensor:
    """``plane[corners[n, p, c]] . vectors[n]``: (N, P, 4) rows, (N, channels) -> (N, P, 4).

    The rows are gathered into ``buffer`` (reused across tiles: no fresh pages per tile)."""
    rows = buffer[:corners.numel() * plane.shape[1]].view(corners.numel(), plane.shape[1])
    torch.index_select(plane, 0, corners.flatten(), out=rows)
    products = rows.view(corners.shape[0], -1, plane.shape[1]).mul_(vectors.unsqueeze(1))
    return products.sum(dim=2).view(corners.shape)


class FusedDeformableAttention(torch.autograd.Function):
    """Local deformable attention with one head per offset group (``num_heads == G``, as in
    SAPA-deform), by weighted row sums. Inputs as :func:`local_deformable_attention_reference`.

    With one head per group, point p's logit is ``q . sum_c w_c K[corner c]`` and the output
    ``sum_(p, c) attn_p w_c V[corner c]``: both are weighted sums of rows of the group's
    channels-last key / value plane (:func:`weighted_rows`), so no sampled map of all points is
    ever formed. Per (batch, group, tile of output rows) the forward takes one weighted sum of
    four rows per point (sampled keys, in the tile) and one of 4P rows per pixel (the output);
    it saves only the (B, G, oH, oW, P) attention. The backward recomputes the corners, samples
    values and keys with the weights' x / y derivatives for the position gradient, takes the
    query gradient as another weighted sum of key rows, and the key and value gradients by
    :func:`scatter_corners`. Besides inputs, output and gradients it allocates the bordered
    planes and tiles of about :data:`BAG_TILE_ELEMENTS` per thread.
    """

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor, positions: Tensor,
                key_bias: Optional[Tensor], scale: float) -> Tensor:
        batch, _, out_h, out_w = query.shape
        groups, points = positions.shape[1:3]
        height, width = value.shape[-2:]
        dtype = torch.promote_types(compute_dtype(value.dtype), positions.dtype)
        key_planes = bordered_planes(key, groups, dtype)
        value_planes = bordered_planes(value, groups, dtype)
        key_channels, value_channels = key_planes.shape[-1], value_planes.shape[-1]
        out = value.new_empty(batch, groups, value_channels, out_h, out_w, dtype=dtype)
        attention = value.new_empty(batch, groups, out_h, out_w, points, dtype=dtype)
        shape = (batch, groups, out_h, out_w, points, max(key_channels, value_channels))
        for b, g, rows in _fused_tiles(shape, query.device):
            index, weights = bilinear_corners(_tile_positions(positions, b, g, rows), height,
                                              width, dtype)
            corners = corner_rows(index, width)
            queries = _tile_pixels(query, b, g, groups, rows, dtype) * scale
            sampled_keys = weighted_rows(key_planes[b, g], corners.flatten(0, 1),
                                         weights.flatten(0, 1)).view(*index.shape, key_channels)
            logits = torch.bmm(sampled_keys, queries.unsqueeze(2)).squeeze(2)
            if key_bias is not None:
                logits += queries @ key_bias[g].to(dtype).t()
            weights_rows = logits.softmax(dim=1)
            attention[b, g, rows].view(-1, points).copy_(weights_rows)
            tile = weighted_rows(value_planes[b, g], corners.flatten(1),
                                 (weights_rows.unsqueeze(2) * weights).flatten(1))
            out[b, g, :, rows].copy_(tile.view(-1, out_w, value_channels).permute(2, 0, 1))
        ctx.save_for_backward(query, key, value, positions, key_bias, attention)
        ctx.scale = scale
        return out.view(batch, -1, out_h, out_w).to(value.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        query, key, value, positions, key_bias, attention = ctx.saved_tensors
        need_query, need_key, need_value, need_positions, need_bias = ctx.needs_input_grad[:5]
        scale = ctx.scale
        batch, _, out_h, out_w = query.shape
        groups, points = positions.shape[1:3]
        height, width = value.shape[-2:]
        dtype = attention.dtype
        with autocast_disabled(query.device.type):
            key_planes = bordered_planes(key, groups, dtype)
            value_planes = bordered_planes(value, groups, dtype)
            key_channels, value_channels = key_planes.shape[-1], value_planes.shape[-1]
            grad_query = query.new_empty(batch, groups, key_channels, out_h, out_w,
                                         dtype=dtype) if need_query else None
            grad_keys = torch.zeros_like(key_planes) if need_key else None
            grad_values = torch.zeros_like(value_planes) if need_value else None
            grad_positions = torch.empty_like(positions) if need_positions else None
            grad_bias = torch.zeros_like(key_bias, dtype=dtype) if need_bias else None
            shape = (batch, groups, out_h, out_w, points, max(key_channels, value_channels))
            buffer = value_planes.new_empty(_tile_pixel_count(shape, query.device) * points * 4
                                            * max(key_channels, value_channels))
            for b, g, rows in _fused_tiles(shape, query.device):
                index, weights, d_dx, d_dy = bilinear_corners(
                    _tile_positions(positions, b, g, rows), height, width, dtype, True)
                corners = corner_rows(index, width)
                pixels = index.shape[0]
                queries = _tile_pixels(query, b, g, groups, rows, dtype) * scale
                upstream = _tile_pixels(grad_out, b, g, groups, rows, dtype)
                weights_rows = attention[b, g, rows].reshape(pixels, points)
                # <g, V[corner]> for every corner: <g, V_p> and its x / y derivatives follow.
                value_dots = corner_dots(value_planes[b, g], corners, upstream, buffer)
                grad_weights = (value_dots * weights).sum(dim=2)
                grad_logits = weights_rows * (grad_weights - (weights_rows * grad_weights).sum(
                    dim=1, keepdim=True))
                kernel = grad_logits.unsqueeze(2) * weights  # d loss / d (q . K[corner])
                if need_query:
                    grad_q = weighted_rows(key_planes[b, g], corners.flatten(1),
                                           kernel.flatten(1))
                    if key_bias is not None:
                        grad_q += grad_logits @ key_bias[g].to(dtype)
                    grad_query[b, g, :, rows].copy_(
                        (grad_q * scale).view(-1, out_w, key_channels).permute(2, 0, 1))
                if need_bias:
                    grad_bias[g] += grad_logits.t() @ queries
                if need_positions:
                    key_dots = corner_dots(key_planes[b, g], corners, queries, buffer)
                    along = value_dots * weights_rows.unsqueeze(2) \
                        + key_dots * grad_logits.unsqueeze(2)  # d loss / d w_c
                    grad = torch.stack([(along * d_dx).sum(dim=2), (along * d_dy).sum(dim=2)],
                                       dim=-1)  # (N, P, 2)
                    grad_positions[b, g, :, rows].copy_(
                        grad.view(-1, out_w, points, 2).permute(2, 0, 1, 3))
                if need_value or need_key:
                    scatter = CornerScatter(index, width)
                if need_value:
                    scatter.add(grad_values[b, g], weights_rows.unsqueeze(2) * weights, upstream)
                if need_key:
                    scatter.add(grad_keys[b, g], kernel, queries)
        grads = (None if grad_query is None else grad_query.view(query.shape).to(query.dtype),
                 None if grad_keys is None else unbordered(grad_keys, height, width, key.dtype),
                 None if grad_values is None else unbordered(grad_values, height, width,
                                                             value.dtype),
                 grad_positions,
                 None if grad_bias is None else grad_bias.to(key_bias.dtype))
        return (*grads, None)


def _tile_rows(shape: Tuple[int, ...], device: torch.device) -> int:
    """Output rows of a fused-path tile for (B, G, oH, oW, P, widest channels): its gathered
    corner rows (4P x channels per pixel) are about :data:`BAG_TILE_ELEMENTS` per thread."""
    _, _, out_h, out_w, points, channels = shape
    budget = (BAG_TILE_ELEMENTS * torch.get_num_threads() if device.type == 'cpu'
              else GPU_TILE_ELEMENTS)
    return max(1, min(out_h, budget // (4 * out_w * points * channels)))


def _tile_pixel_count(shape: Tuple[int, ...], device: torch.device) -> int:
    """Pixels of the largest fused-path tile."""
    return _tile_rows(shape, device) * shape[3]


def _fused_tiles(shape: Tuple[int, ...], device: torch.device) -> Iterator[Tuple[int, int, slice]]:
    """``(b, g, rows)`` tiles of the fused path for (B, G, oH, oW, P, widest channels)."""
    batch, groups, out_h = shape[:3]
    step = _tile_rows(shape, device)
    for b in range(batch):
        for g in range(groups):
            for start in range(0, out_h, step):
                yield b, g, slice(start, min(out_h, start + step))


def _tile_positions(positions: Tensor, b: int, g: int, rows: slice) -> Tensor:
    """(B, G, P, oH, oW, 2) -> the tile's (pixels, P, 2), pixels row-major."""
    tile = positions[b, g, :, rows]
    return tile.permute(1, 2, 0, 3).reshape(-1, tile.shape[0], 2)


def _tile_pixels(feature: Tensor, b: int, g: int, groups: int, rows: slice,
                 dtype: torch.dtype) -> Tensor:
    """Group g's channels of (B, C, oH, oW) at the tile's pixels: (pixels, C / G)."""
    tile = feature[b].unflatten(0, (groups, -1))[g, :, rows]
    return tile.permute(1, 2, 0).reshape(-1, tile.shape[0]).to(dtype)


class NativeDeformableAttention(torch.autograd.Function):
    """Local deformable attention by the C++ CPU kernel (:mod:`mmdynup.ops.native`, any number of
    heads and offset groups). Inputs as :func:`local_deformable_attention_reference`.

    The kernel reads key / value rows channels-last (copies of the low-resolution maps), query
    and output in the host's (B, C, oH, oW) layout through per-tile buffers of 64 pixels. The
    forward saves the channels-last key copy (not the key, which may be a view that keeps a
    larger tensor alive) and the (B, heads, P, oH, oW) attention; the backward runs one pass over
    the pixels (the logits', query's and positions' gradients) and one over (batch, group) pairs
    that adds every corner's share into the key / value gradients in a fixed order
    (deterministic, no atomics); those come back as channels-last (B, C, H, W) tensors. Besides
    inputs, output and gradients it allocates the channels-last copies and the (B, heads, P, oH,
    oW) logit gradient.
    """

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor, positions: Tensor,
                key_bias: Optional[Tensor], num_heads: int, scale: float) -> Tensor:
        kernels = native_module(required=True)
        dtype = torch.promote_types(compute_dtype(value.dtype), positions.dtype)
        query_rows, key_planes, value_planes, where, bias = _native_inputs(
            query, key, value, positions, key_bias, dtype)
        out, attention = kernels.deformable_attention_forward(
            query_rows, key_planes, value_planes, where, bias, num_heads, scale)
        ctx.save_for_backward(query_rows, key_planes, value, where, bias, attention)
        ctx.num_heads, ctx.scale = num_heads, scale
        ctx.bias_dtype = None if key_bias is None else key_bias.dtype
        ctx.dtypes = tuple(tensor.dtype for tensor in (query, key, value, positions))
        ctx.query_shape, ctx.positions_shape = query.shape, positions.shape
        return out.view(value.shape[0], -1, *query.shape[-2:]).to(value.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        query_rows, key_planes, value, where, bias, attention = ctx.saved_tensors
        need_query, need_key, need_value, need_positions, need_bias = ctx.needs_input_grad[:5]
        num_heads, scale = ctx.num_heads, ctx.scale
        query_dtype, key_dtype, value_dtype, positions_dtype = ctx.dtypes
        dtype = attention.dtype
        value_planes = channels_last_planes(value, dtype)
        grad_q, grad_k, grad_v, grad_p, grad_logits = native_module(
            required=True).deformable_attention_backward(
                grad_out.flatten(2).to(dtype).contiguous(), query_rows, key_planes, value_planes,
                where, bias, attention, num_heads, scale, need_query, need_key, need_value,
                need_positions)
        grad_bias = None
        if need_bias:
            # d logit / d bias = scale * query, summed over batch and pixels.
            grad_bias = torch.einsum('bhpn,bhdn->hpd', grad_logits,
                                     _heads(query_rows, num_heads)) * scale
            grad_bias = grad_bias.to(ctx.bias_dtype)
        return (grad_q.view(ctx.query_shape).to(query_dtype) if need_query else None,
                # (B, H, W, C) planes as channels-last (B, C, H, W) tensors: no copy.
                grad_k.permute(0, 3, 1, 2).to(key_dtype) if need_key else None,
                grad_v.permute(0, 3, 1, 2).to(value_dtype) if need_value else None,
                grad_p.view(ctx.positions_shape).to(positions_dtype) if need_positions else None,
                grad_bias, None, None)


def _native_inputs(query: Tensor, key: Tensor, value: Tensor, positions: Tensor,
                   key_bias: Optional[Tensor], dtype: torch.dtype) -> Tuple[Tensor, ...]:
    """The kernel's layouts, in ``dtype``: query (B, D, N), key / value planes (B, H, W, D / C),
    positions (B, G, P, N, 2), the key bias (heads, P, D / heads) or an empty tensor."""
    bias = (query.new_empty(0, dtype=dtype) if key_bias is None
            else key_bias.to(dtype).contiguous())
    return (query.flatten(2).to(dtype).contiguous(), channels_last_planes(key, dtype),
            channels_last_planes(value, dtype), positions.flatten(3, 4).to(dtype).contiguous(),
            bias)


def local_deformable_attention(query: Tensor, key: Tensor, value: Tensor, positions: Tensor,
                               num_heads: int, scale: float, key_bias: Optional[Tensor] = None,
                               impl: Optional[str] = None) -> Tensor:
    """Local deformable attention; see :func:`local_deformable_attention_reference` for shapes.

    Args:
        impl: ``'auto'``, ``'reference'``, ``'tiled'``, ``'triton'`` or ``'native'``; None
            follows :func:`mmdynup.ops.dispatch.use_implementation`. ``'native'`` (the default
            on CPU tensors when the C++ kernels build) runs :class:`NativeDeformableAttention`;
            ``'tiled'`` and ``'triton'`` (there is no Triton kernel for this op) run the pure
            PyTorch paths: :class:`FusedDeformableAttention` with one head per offset group,
            else the point-by-point :class:`LocalDeformableAttention`; ``'auto'`` picks the
            reference while exporting or compiling.
    """
    check_deformable_attention_arguments(query, key, value, positions, num_heads, key_bias)
    tensors = (query, key, value) if key_bias is None else (query, key, value, key_bias)
    chosen = resolve_implementation(impl, *tensors, native=True)
    if chosen == 'reference':
        return local_deformable_attention_reference(query, key, value, positions, num_heads,
                                                    scale, key_bias)
    # Positions keep their own (at least float32) dtype: half precision cannot place a point.
    query, key, value = autocast_inputs(query, key, value)
    if key_bias is not None:
        key_bias = autocast_inputs(key_bias)[0].to(query.dtype)
    with autocast_disabled(query.device.type):
        if chosen == 'native':
            return NativeDeformableAttention.apply(query, key, value, positions, key_bias,
                                                   num_heads, scale)
        if num_heads == positions.shape[1]:
            return FusedDeformableAttention.apply(query, key, value, positions, key_bias, scale)
        return LocalDeformableAttention.apply(query, key, value, positions, key_bias, num_heads,
                                              scale)
