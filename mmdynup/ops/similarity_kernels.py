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
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .dispatch import autocast_disabled, autocast_inputs, resolve_implementation
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
