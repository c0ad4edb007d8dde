"""Local similarity and local attention: the kernels of SAPA (Lu et al., "SAPA: Similarity-Aware
Point Affiliation for Feature Upsampling", NeurIPS 2022; journal version "On Point Affiliation in
Feature Upsampling").

Every high-resolution query (i, j) is compared with the keys in the k x k low-resolution window
centred on its parent pixel (i // s, j // s):

``logits[b, u * k + v, i, j] = sum_d query[b, d, i, j] * key_pad[b, d, i // s + u, j // s + v]``

with ``key_pad`` zero-padded by ``k // 2``, so a neighbour outside the image has logit 0 and still
takes part in the softmax (the authors' CUDA kernels and their ``qk_pytorch`` check do the same).
Plain dot product: no 1 / sqrt(d) scaling, no temperature. :func:`local_attention` then
normalises the logits with a softmax over the k * k window and reassembles the value with them
(:func:`mmdynup.ops.reassembly.reassemble`, one kernel group), which is the authors' ``av``.

The output may be any top-left window ``(oH, oW)`` of the ``s x`` grid (``oH <= s * H``,
``oW <= s * W``); the parent of (i, j) does not depend on the window.

:func:`normalized_local_similarity` / :func:`normalized_local_attention` take the query before
a LayerNorm over its channels (SAPA-I, whose query is the normalised guide itself), so that the
fast paths need not keep a guide-sized normalised copy for the backward.
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .reassembly import reassemble
from .similarity_kernels import fast_local_similarity, fast_normalized_query_similarity


def _check_integer(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def check_local_similarity_arguments(query: Tensor, key: Tensor, kernel_size: int,
                                     scale_factor: int) -> None:
    """Shape contract at the op boundary (each error names the offending argument)."""
    kernel_size = _check_integer('kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd (the window is centred on the parent pixel), '
                         f'got {kernel_size}')
    scale_factor = _check_integer('scale_factor', scale_factor, 1)
    for name, tensor in (('query', query), ('key', key)):
        if not isinstance(tensor, Tensor) or tensor.dim() != 4:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ValueError(f'{name} must be a 4-D tensor (B, d, H, W), got {shape}')
        if not tensor.is_floating_point():
            raise TypeError(f'{name} must be a floating-point tensor, got dtype {tensor.dtype}')
    if query.dtype != key.dtype or query.device != key.device:
        raise TypeError(f'query ({query.dtype}, {query.device}) and key ({key.dtype}, '
                        f'{key.device}) must share dtype and device')
    batch, dim, height, width = key.shape
    if query.shape[:2] != key.shape[:2]:
        raise ValueError(f'query (B, d) = {tuple(query.shape[:2])} must equal key (B, d) = '
                         f'{(batch, dim)}')
    out_h, out_w = query.shape[-2:]
    if out_h > scale_factor * height or out_w > scale_factor * width:
        raise ValueError(f'query size {out_h}x{out_w} exceeds scale_factor={scale_factor} x the '
                         f'key size {height}x{width} ({scale_factor * height}x'
                         f'{scale_factor * width})')


def local_similarity_reference(query: Tensor, key: Tensor, kernel_size: int,
                               scale_factor: int) -> Tensor:
    """Plain PyTorch local similarity (the specification).

    The key windows are unfolded once at low resolution and every one of the s x s query phases
    is compared with them, so nothing is repeated s^2 times (the layout of the authors'
    ``qk_pytorch``).

    Args:
        query: (B, d, oH, oW) high-resolution queries, ``oH <= s * H``, ``oW <= s * W``.
        key: (B, d, H, W) low-resolution keys.
        kernel_size: k, odd.
        scale_factor: s.

    Returns:
        (B, k * k, oH, oW) logits, window position ``u * k + v`` (row-major).
    """
    check_local_similarity_arguments(query, key, kernel_size, scale_factor)
    batch, dim, height, width = key.shape
    out_h, out_w = query.shape[-2:]
    s, taps = scale_factor, kernel_size * kernel_size
    windows = F.unfold(key, kernel_size, padding=kernel_size // 2).view(
        batch, dim, taps, height, width)
    # Zero queries fill the s x grid beyond (oH, oW); their logits are cropped away below.
    query = F.pad(query, (0, s * width - out_w, 0, s * height - out_h))
    query = query.reshape(batch, dim, height, s, width, s)
    logits = torch.einsum('bdhpwq,bdthw->bthpwq', query, windows)
    return logits.reshape(batch, taps, s * height, s * width)[..., :out_h, :out_w]


def local_similarity(query: Tensor, key: Tensor, kernel_size: int, scale_factor: int,
                     impl: Optional[str] = None) -> Tensor:
    """Dot product of each high-resolution query with the k x k keys around its parent.

    See :func:`local_similarity_reference` for shapes; ``impl`` picks the implementation as in
    :mod:`mmdynup.ops.dispatch` (fast paths: :mod:`mmdynup.ops.similarity_kernels`).
    """
    check_local_similarity_arguments(query, key, kernel_size, scale_factor)
    logits = fast_local_similarity(query, key, kernel_size, scale_factor, impl)
    if logits is None:
        return local_similarity_reference(query, key, kernel_size, scale_factor)
    return logits


def local_attention(query: Tensor, key: Tensor, value: Tensor, kernel_size: int,
                    scale_factor: int, impl: Optional[str] = None) -> Tensor:
    """SAPA's upsampling: softmax over each query's k x k key window, then reassemble ``value``.

    Args:
        query: (B, d, oH, oW) high-resolution queries.
        key: (B, d, H, W) low-resolution keys.
        value: (B, C, H, W) low-resolution feature that is upsampled (outside neighbours read 0).
        kernel_size: k, odd.
        scale_factor: s.
        impl: implementation of both steps (:mod:`mmdynup.ops.dispatch`); None: the active one.

    Returns:
        (B, C, oH, oW).
    """
    _check_value(value, key)
    return _attend(local_similarity(query, key, kernel_size, scale_factor, impl), value,
                   kernel_size, scale_factor, impl)


def normalized_local_similarity(query: Tensor, norm_weight: Optional[Tensor],
                                norm_bias: Optional[Tensor], eps: float, key: Tensor,
                                kernel_size: int, scale_factor: int,
                                impl: Optional[str] = None) -> Tensor:
    """:func:`local_similarity` of ``LayerNorm_C(query)`` (affine ``norm_weight`` /
    ``norm_bias`` (d,) or None, epsilon ``eps``) with ``key``; shapes as
    :func:`local_similarity_reference`. The fast paths keep no normalised copy of the query
    (:class:`~mmdynup.ops.similarity_kernels.NormalizedQuerySimilarity`)."""
    check_local_similarity_arguments(query, key, kernel_size, scale_factor)
    logits = fast_normalized_query_similarity(query, norm_weight, norm_bias, eps, key,
                                              kernel_size, scale_factor, impl)
    if logits is not None:
        return logits
    normed = F.layer_norm(query.permute(0, 2, 3, 1), (query.shape[1],), norm_weight, norm_bias,
                          eps).permute(0, 3, 1, 2)
    return local_similarity(normed, key, kernel_size, scale_factor, impl)


def normalized_local_attention(query: Tensor, norm_weight: Optional[Tensor],
                               norm_bias: Optional[Tensor], eps: float, key: Tensor,
                               value: Tensor, kernel_size: int, scale_factor: int,
                               impl: Optional[str] = None) -> Tensor:
    """:func:`local_attention` with the query LayerNorm'd over its channels first (SAPA-I);
    arguments as :func:`normalized_local_similarity` and :func:`local_attention`."""
    _check_value(value, key)
    logits = normalized_local_similarity(query, norm_weight, norm_bias, eps, key, kernel_size,
                                         scale_factor, impl)
    return _attend(logits, value, kernel_size, scale_factor, impl)


def _check_value(value: Tensor, key: Tensor) -> None:
    if value.shape[0] != key.shape[0] or value.shape[-2:] != key.shape[-2:]:
        raise ValueError(f'value (B, ., H, W) = {tuple(value.shape)} must match key '
                         f'{tuple(key.shape)} in batch and spatial size')


def _attend(logits: Tensor, value: Tensor, kernel_size: int, scale_factor: int,
            impl: Optional[str]) -> Tensor:
    """Softmax of (B, k*k, oH, oW) logits over the window, then reassembly of ``value``."""
    return reassemble(value, F.softmax(logits, dim=1).unsqueeze(1), kernel_size, scale_factor,
                      impl)
