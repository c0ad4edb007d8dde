"""Fast local similarity (SAPA's query-key step; Lu et al., NeurIPS 2022) from the reassembly
primitives.

``logits[b, u * k + v, i, j] = sum_d query[b, d, i, j] * key_pad[b, d, i // s + u, j // s + v]``
(:func:`mmdynup.ops.local_similarity.local_similarity_reference`) is, term for term, the
gradient of reassembly with respect to its kernels, with ``key`` as the reassembled input and
``query`` as the upstream gradient. So its forward and both gradients are the three primitives
every fast reassembly path already has (:class:`mmdynup.ops.reassembly.TiledPrimitives`, the
Triton ones), with one kernel group:

* ``logits``     = kernel gradient of reassembly(key, .) at upstream ``query``;
* ``grad_query`` = reassembly of ``key`` with the logit gradient as kernels;
* ``grad_key``   = input gradient of reassembly with the logit gradient as kernels, at
  upstream ``query``.

Nothing of size (B, d, k*k, oH, oW) is formed: the tiled path reads the key windows as strided
views, one low-resolution row tile at a time (memory: the logits plus a few MB).

:class:`NormalizedQuerySimilarity` is the same with a LayerNorm over the query's channels in
front (SAPA-I's query is the LayerNorm'd guide, as wide as the guide): it keeps the raw query
and its per-pixel statistics instead of the normalised copy, recomputes that copy in backward
only for the key gradient, and turns the normalised query's gradient into the raw query's in
place, one pixel chunk at a time (one query-sized gradient buffer instead of two).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .dispatch import autocast_disabled, autocast_inputs, resolve_implementation
from .normalized_projection import _affine, _at, _chunks, _statistics, runs_fused
from .reassembly import fast_primitives


class LocalSimilarity(torch.autograd.Function):
    """Local similarity through a fast path's reassembly primitives.

    Inputs: query (B, d, oH, oW), key (B, d, H, W), kernel_size k, scale_factor s, primitives.
    Output: (B, k*k, oH, oW) logits.
    """

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, kernel_size: int, scale_factor: int,
                primitives) -> Tensor:
        ctx.save_for_backward(query, key)
        ctx.kernel_size, ctx.scale_factor, ctx.primitives = kernel_size, scale_factor, primitives
        with autocast_disabled(query.device.type):
            _, logits = primitives.gradients(query, kernel_size, scale_factor, tuple(key.shape),
                                             1, x=key)
        return logits.squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logits: Tensor):
        query, key = ctx.saved_tensors
        kernels = grad_logits.unsqueeze(1)  # one kernel group
        grad_query = grad_key = None
        with autocast_disabled(query.device.type):
            if ctx.needs_input_grad[0]:
                grad_query = ctx.primitives.reassemble(key, kernels, ctx.kernel_size,
                                                       ctx.scale_factor)
            if ctx.needs_input_grad[1]:
                grad_key, _ = ctx.primitives.gradients(query, ctx.kernel_size, ctx.scale_factor,
                                                       tuple(key.shape), 1, kernels=kernels)
        return grad_query, grad_key, None, None, None


def fast_local_similarity(query: Tensor, key: Tensor, kernel_size: int, scale_factor: int,
                          impl: Optional[str] = None) -> Optional[Tensor]:
    """Local similarity on the fast path chosen by ``impl`` (see :mod:`mmdynup.ops.dispatch`),
    or None when the choice is the reference (the caller then runs its reference).

    Arguments must already be checked (``check_local_similarity_arguments``).
    """
    chosen = resolve_implementation(impl, query, key)
    if chosen == 'reference':
        return None
    query, key = autocast_inputs(query, key)
    return LocalSimilarity.apply(query, key, kernel_size, scale_factor, fast_primitives(chosen))


def _normalise(flat: Tensor, mean: Tensor, rstd: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """LayerNorm over the channels of (B, C, N) from its statistics (B, 1, N): one new tensor."""
    normed = flat.sub(mean).mul_(rstd).mul_(gamma[:, None])
    return normed.add_(beta[:, None])


class NormalizedQuerySimilarity(torch.autograd.Function):
    """Local similarity of ``LayerNorm_C(query)`` with ``key`` through a fast path's primitives.

    Inputs: query (B, d, oH, oW) contiguous, norm_weight / norm_bias (d,) or None, eps,
    key (B, d, H, W), kernel_size, scale_factor, primitives. Output: (B, k*k, oH, oW) logits.
    """

    @staticmethod
    def forward(ctx, query: Tensor, norm_weight: Optional[Tensor], norm_bias: Optional[Tensor],
                eps: float, key: Tensor, kernel_size: int, scale_factor: int,
                primitives) -> Tensor:
        flat = query.reshape(*query.shape[:2], -1)
        mean, rstd = _statistics(flat, None, eps)
        gamma = _affine(norm_weight, query.shape[1], 1.0, query)
        beta = _affine(norm_bias, query.shape[1], 0.0, query)
        normed = _normalise(flat, mean, rstd, gamma, beta).view(query.shape)
        _, logits = primitives.gradients(normed, kernel_size, scale_factor, tuple(key.shape), 1,
                                         x=key)
        ctx.save_for_backward(query, norm_weight, norm_bias, key, mean, rstd)
        ctx.kernel_size, ctx.scale_factor, ctx.primitives = kernel_size, scale_factor, primitives
        return logits.squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logits: Tensor):
        query, norm_weight, norm_bias, key, mean, rstd = ctx.saved_tensors
        need_query, need_gamma, need_beta, _, need_key = ctx.needs_input_grad[:5]
        k, s, primitives = ctx.kernel_size, ctx.scale_factor, ctx.primitives
        kernels = grad_logits.unsqueeze(1)  # one kernel group
        batch, channels = query.shape[:2]
        flat = query.reshape(batch, channels, -1)
        gamma = _affine(norm_weight, channels, 1.0, query)
        beta = _affine(norm_bias, channels, 0.0, query)
        grad_key = grad_query = grad_gamma = grad_beta = None
        if need_key:  # the normalised query exists only for this call
            normed = _normalise(flat, mean, rstd, gamma, beta).view(query.shape)
            grad_key, _ = primitives.gradients(normed, k, s, tuple(key.shape), 1,
                                               kernels=kernels)
            normed = None
        if need_query or need_gamma or need_beta:
            # Gradient of the normalised query, made the raw query's in place chunk by chunk.
            grad = primitives.reassemble(key, kernels, k, s).reshape(batch, channels, -1)
            grad_gamma, grad_beta = query.new_zeros(channels), query.new_zeros(channels)
            for chunk in _chunks(flat):
                rstd_chunk = _at(rstd, chunk)
                xhat = (flat[:, :, chunk] - _at(mean, chunk)).mul_(rstd_chunk)
                target = grad[:, :, chunk]
                grad_gamma += (target * xhat).sum(dim=(0, 2))
                grad_beta += target.sum(dim=(0, 2))
                target.mul_(gamma[:, None])
                # d xhat / d x: rstd (g - mean_C(g) - xhat mean_C(g xhat)), g = gamma * grad.
                along = (target * xhat).mean(dim=1, keepdim=True)
                target.sub_(target.mean(dim=1, keepdim=True)).sub_(xhat.mul_(along))
                target.mul_(rstd_chunk)
            grad_query = grad.view(query.shape)
        return (grad_query if need_query else None,
                grad_gamma if need_gamma and norm_weight is not None else None,
                grad_beta if need_beta and norm_bias is not None else None,
                None, grad_key, None, None, None)


def fast_normalized_query_similarity(query: Tensor, norm_weight: Optional[Tensor],
                                     norm_bias: Optional[Tensor], eps: float, key: Tensor,
                                     kernel_size: int, scale_factor: int,
                                     impl: Optional[str] = None) -> Optional[Tensor]:
    """Local similarity of ``LayerNorm_C(query)`` on a fast path, or None where the reference
    runs (the choice is the reference, autocast is on, dtypes differ, or the query is not
    contiguous NCHW). Arguments must already be checked."""
    if not (runs_fused(impl, query, norm_weight, norm_bias, key) and query.is_contiguous()):
        return None
    return NormalizedQuerySimilarity.apply(query, norm_weight, norm_bias, eps, key, kernel_size,
                                           scale_factor,
                                           fast_primitives(resolve_implementation(impl, query,
                                                                                  key)))
