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
  sampled key map at a time.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .dispatch import autocast_disabled, autocast_inputs, resolve_implementation
from .point_sampling import point_sample


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
    attention = logits.softmax(dim=2)
    values = point_sample(value, positions, groups).reshape(batch, num_heads, -1, points,
                                                            out_h * out_w)
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


def local_deformable_attention(query: Tensor, key: Tensor, value: Tensor, positions: Tensor,
                               num_heads: int, scale: float, key_bias: Optional[Tensor] = None,
                               impl: Optional[str] = None) -> Tensor:
    """Local deformable attention; see :func:`local_deformable_attention_reference` for shapes.

    Args:
        impl: ``'auto'``, ``'reference'``, ``'tiled'`` or ``'triton'``; None follows
            :func:`mmdynup.ops.dispatch.use_implementation`. Every name other than
            ``'reference'`` runs the point-by-point :class:`LocalDeformableAttention` (pure
            PyTorch, any device); ``'auto'`` picks the reference while exporting or compiling.
    """
    check_deformable_attention_arguments(query, key, value, positions, num_heads, key_bias)
    tensors = (query, key, value) if key_bias is None else (query, key, value, key_bias)
    if resolve_implementation(impl, *tensors) == 'reference':
        return local_deformable_attention_reference(query, key, value, positions, num_heads,
                                                    scale, key_bias)
    # Positions keep their own (at least float32) dtype: half precision cannot place a point.
    query, key, value = autocast_inputs(query, key, value)
    if key_bias is not None:
        key_bias = autocast_inputs(key_bias)[0].to(query.dtype)
    with autocast_disabled(query.device.type):
        return LocalDeformableAttention.apply(query, key, value, positions, key_bias, num_heads,
                                              scale)
