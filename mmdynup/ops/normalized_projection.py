"""Normalised projection: a pointwise (1x1) projection of a normalised feature, ``W norm(x) + b``,
without the normalised feature (the query of SAPA, Lu et al., NeurIPS 2022: a Linear layer after
LayerNorm over channels, or in the journal code a 1x1 convolution after GroupNorm(32)).

Both norms are per-channel affine maps of ``x`` with statistics that are reductions of ``x``, so
the projection folds them in:

* LayerNorm over the C channels of each pixel n (mean ``mu_n``, ``rstd_n = 1 / sqrt(var_n + eps)``):
  ``W (gamma * (x_n - mu_n) * rstd_n + beta) + b = rstd_n (W' x_n - mu_n W' 1) + W beta + b`` with
  ``W' = W diag(gamma)``;
* GroupNorm over channel groups of each sample b (``mu_bg``, ``rstd_bg``):
  ``W diag(a_b) x + W c_b + b`` with ``a_b = gamma rstd_bg``, ``c_b = beta - gamma mu_bg rstd_bg``.

Implementations (:mod:`mmdynup.ops.dispatch`):

* :func:`layer_norm_projection_reference` / :func:`group_norm_projection_reference` - the
  specification: the norm, then the projection. At a guide's resolution the normalised copy
  (saved for the projection's backward) and its gradient are each as large as the guide.
* :class:`NormalizedProjection` - one matrix product forward; the backward writes the input
  gradient with one matrix product plus a per-pixel (LayerNorm) or per-group (GroupNorm) affine
  term in place, and takes the norm's statistics gradients from E x C products. Besides output
  and gradients it allocates E-channel temporaries only. Used outside autocast when all tensors
  share a dtype; autocast keeps the reference and its dtype policy.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import is_autocast_enabled
from .dispatch import resolve_implementation


def _matrix(weight: Tensor) -> Tensor:
    """(E, C) Linear or (E, C, 1, 1) 1x1 convolution weight -> (E, C)."""
    return weight.reshape(weight.shape[0], -1)


def layer_norm_projection_reference(x: Tensor, norm_weight: Optional[Tensor],
                                    norm_bias: Optional[Tensor], eps: float, weight: Tensor,
                                    bias: Optional[Tensor]) -> Tensor:
    """``W LayerNorm_C(x) + b`` at every pixel (the specification).

    Args:
        x: (B, C, H, W).
        norm_weight, norm_bias: (C,) LayerNorm affine parameters (None: no affine).
        eps: LayerNorm epsilon.
        weight: (E, C) or (E, C, 1, 1); bias: (E,) or None.

    Returns:
        (B, E, H, W).
    """
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm_weight, norm_bias, eps)
    return F.linear(normed, _matrix(weight), bias).permute(0, 3, 1, 2)


def group_norm_projection_reference(x: Tensor, num_groups: int, norm_weight: Optional[Tensor],
                                    norm_bias: Optional[Tensor], eps: float, weight: Tensor,
                                    bias: Optional[Tensor]) -> Tensor:
    """``W GroupNorm(x) + b`` at every pixel (the specification); arguments as
    :func:`layer_norm_projection_reference` plus ``num_groups``."""
    normed = F.group_norm(x, num_groups, norm_weight, norm_bias, eps)
    return F.conv2d(normed, _matrix(weight)[:, :, None, None], bias)


def _affine(tensor: Optional[Tensor], channels: int, fill: float, like: Tensor) -> Tensor:
    return like.new_full((channels,), fill) if tensor is None else tensor


#: Elements of one pixel chunk of the centred input (B x C x pixels) in the fused path: the
#: centred copy that keeps the statistics' gradients accurate never exists at full size.
CHUNK_ELEMENTS = 1 << 20


def _chunks(x: Tensor):
    """Slices of the flattened pixels of x (B, C, N) holding about :data:`CHUNK_ELEMENTS`."""
    pixels = x.shape[2]
    step = max(1, CHUNK_ELEMENTS // (x.shape[0] * x.shape[1]))
    for start in range(0, pixels, step):
        yield slice(start, min(pixels, start + step))


def _at(statistic: Tensor, chunk: slice) -> Tensor:
    """A statistic of :func:`_statistics` at a pixel chunk (GroupNorm's hold for every pixel)."""
    return statistic if statistic.shape[2] == 1 else statistic[:, :, chunk]


class NormalizedProjection(torch.autograd.Function):
    """``W norm(x) + b`` with LayerNorm over channels (``num_groups`` None) or GroupNorm.

    Inputs: x (B, C, H, W), norm_weight / norm_bias (C,) or None, weight (E, C), bias (E,) or None,
    eps, num_groups. Output (B, E, H, W). Products with the input use it centred (``x - mu``),
    one chunk of pixels at a time, so no gradient is a difference of large sums.
    """

    @staticmethod
    def forward(ctx, x: Tensor, norm_weight: Optional[Tensor], norm_bias: Optional[Tensor],
                weight: Tensor, bias: Optional[Tensor], eps: float,
                num_groups: Optional[int]) -> Tensor:
        batch, channels = x.shape[:2]
        flat = x.reshape(batch, channels, -1)
        gamma = _affine(norm_weight, channels, 1.0, x)
        beta = _affine(norm_bias, channels, 0.0, x)
        shift = weight @ beta + (0 if bias is None else bias)  # (E,)
        mean, rstd = _statistics(flat, num_groups, eps)
        out = flat.new_empty(batch, weight.shape[0], flat.shape[2])
        for chunk in _chunks(flat):
            centred = flat[:, :, chunk] - _at(mean, chunk)
            if num_groups is None:  # rstd per pixel: after the product
                torch.matmul(weight * gamma, centred, out=out[:, :, chunk])
                out[:, :, chunk].mul_(_at(rstd, chunk))
            else:  # rstd per channel group: folded into the weight
                torch.matmul(weight * (gamma * rstd[:, :, 0])[:, None, :], centred,
                             out=out[:, :, chunk])
        out.add_(shift[:, None])
        ctx.save_for_backward(x, norm_weight, norm_bias, weight, mean, rstd)
        ctx.num_groups, ctx.has_bias = num_groups, bias is not None
        return out.view(batch, -1, *x.shape[2:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, norm_weight, norm_bias, weight, mean, rstd = ctx.saved_tensors
        num_groups = ctx.num_groups
        batch, channels = x.shape[:2]
        flat = x.reshape(batch, channels, -1)
        grad = grad_out.reshape(batch, weight.shape[0], -1)
        gamma = _affine(norm_weight, channels, 1.0, x)
        beta = _affine(norm_bias, channels, 0.0, x)
        grad_sum = grad.sum(dim=2)  # (B, E)
        grad_x = torch.empty_like(flat)
        # G xhat^T summed over pixels (B, E, C), xhat = (x - mu) rstd: the weight's gradient.
        products = flat.new_zeros(batch, weight.shape[0], channels)
        if num_groups is None:
            # LayerNorm: out_n = rstd_n W' (x_n - mu_n) + shift, W' = W diag(gamma).
            scaled = weight * gamma
            for chunk in _chunks(flat):
                centred = flat[:, :, chunk] - _at(mean, chunk)
                weighted = grad[:, :, chunk] * _at(rstd, chunk)
                products.baddbmm_(weighted, centred.transpose(1, 2))
                # d loss / d rstd_n = <G_n, W' (x_n - mu_n)>; d xhat / d x through mu and rstd.
                grad_rstd = (torch.matmul(scaled, centred) * grad[:, :, chunk]).sum(
                    dim=1, keepdim=True)
                grad_mean = -_at(rstd, chunk) * torch.matmul(scaled.sum(dim=1), grad[:, :, chunk]
                                                              ).unsqueeze(1)
                slope = -grad_rstd * _at(rstd, chunk).pow(3) / channels
                target = grad_x[:, :, chunk]
                torch.matmul(scaled.t(), weighted, out=target)
                target.addcmul_(slope, centred).add_(grad_mean / channels)
            products = products.sum(dim=0)
            grad_gamma = (products * weight).sum(dim=0)
            grad_beta = grad_sum.sum(dim=0) @ weight
        else:
            per_channel = channels // num_groups
            rstd_c = rstd[:, :, 0]  # (B, C)
            scale = gamma * rstd_c
            projected = (weight * scale[:, None, :]).transpose(1, 2)  # (B, C, E)
            for chunk in _chunks(flat):
                centred = flat[:, :, chunk] - _at(mean, chunk)
                products.baddbmm_(grad[:, :, chunk], centred.transpose(1, 2))
                torch.matmul(projected, grad[:, :, chunk], out=grad_x[:, :, chunk])
            products *= rstd_c[:, None, :]  # G xhat^T per sample
            grad_scale = (products * weight).sum(dim=1)  # d loss / d (gamma xhat), (B, C)
            grad_offset = grad_sum @ weight  # d loss / d beta per sample, (B, C)
            # d xhat / d x through the group statistics: slope (x - mu) + intercept per group.
            count = per_channel * flat.shape[2]
            along = (grad_scale * gamma).view(batch, num_groups, -1).sum(dim=2)
            across = (grad_offset * gamma).view(batch, num_groups, -1).sum(dim=2)
            slope = (-along / count).repeat_interleave(per_channel, dim=1) * rstd_c.pow(2)
            intercept = (-across / count).repeat_interleave(per_channel, dim=1) * rstd_c
            for chunk in _chunks(flat):
                centred = flat[:, :, chunk] - _at(mean, chunk)
                grad_x[:, :, chunk].addcmul_(slope[:, :, None], centred).add_(
                    intercept[:, :, None])
            products = products.sum(dim=0)
            grad_gamma = grad_scale.sum(dim=0)
            grad_beta = grad_offset.sum(dim=0)
        # out = W (gamma xhat + beta) + b.
        grad_weight = products * gamma + grad_sum.sum(dim=0)[:, None] * beta
        grad_bias = grad_sum.sum(dim=0) if ctx.has_bias else None
        return (grad_x.view(x.shape) if ctx.needs_input_grad[0] else None,
                grad_gamma if ctx.needs_input_grad[1] else None,
                grad_beta if ctx.needs_input_grad[2] else None,
                grad_weight if ctx.needs_input_grad[3] else None, grad_bias, None, None)


def _statistics(flat: Tensor, num_groups: Optional[int], eps: float):
    """Mean and 1 / sqrt(var + eps) of x (B, C, N), shaped to broadcast against it: per pixel
    (B, 1, N) for LayerNorm, per channel of each group (B, C, 1) for GroupNorm."""
    batch, channels = flat.shape[:2]
    if num_groups is None:
        variance, mean = torch.var_mean(flat, dim=1, keepdim=True, correction=0)
        return mean, (variance + eps).rsqrt()
    variance, mean = torch.var_mean(flat.reshape(batch, num_groups, -1), dim=2, correction=0)
    per_channel = channels // num_groups
    return (mean.repeat_interleave(per_channel, dim=1).unsqueeze(2),
            (variance + eps).rsqrt().repeat_interleave(per_channel, dim=1).unsqueeze(2))


def runs_fused(impl: Optional[str], x: Tensor, *tensors: Optional[Tensor]) -> bool:
    """Whether a fused Function runs rather than the reference: ``impl`` (or the active choice)
    is a fast path, autocast is off, and all tensors given share x's dtype."""
    present = [tensor for tensor in (x, *tensors) if tensor is not None]
    if resolve_implementation(impl, *present) == 'reference':
        return False
    return not is_autocast_enabled(x.device.type) and all(
        tensor.dtype == x.dtype for tensor in present)


def layer_norm_projection(x: Tensor, norm_weight: Optional[Tensor], norm_bias: Optional[Tensor],
                          eps: float, weight: Tensor, bias: Optional[Tensor],
                          impl: Optional[str] = None) -> Tensor:
    """``W LayerNorm_C(x) + b``; see :func:`layer_norm_projection_reference` for shapes.
    ``impl`` as in :mod:`mmdynup.ops.dispatch` (every fast name runs
    :class:`NormalizedProjection`)."""
    if not runs_fused(impl, x, norm_weight, norm_bias, weight, bias):
        return layer_norm_projection_reference(x, norm_weight, norm_bias, eps, weight, bias)
    return NormalizedProjection.apply(x, norm_weight, norm_bias, _matrix(weight), bias, eps, None)


def group_norm_projection(x: Tensor, num_groups: int, norm_weight: Optional[Tensor],
                          norm_bias: Optional[Tensor], eps: float, weight: Tensor,
                          bias: Optional[Tensor], impl: Optional[str] = None) -> Tensor:
    """``W GroupNorm(x) + b``; see :func:`group_norm_projection_reference` for shapes."""
    if x.shape[1] % num_groups:
        raise ValueError(f'x has {x.shape[1]} channels, not divisible by num_groups={num_groups}')
    if not runs_fused(impl, x, norm_weight, norm_bias, weight, bias):
        return group_norm_projection_reference(x, num_groups, norm_weight, norm_bias, eps,
                                               weight, bias)
    return NormalizedProjection.apply(x, norm_weight, norm_bias, _matrix(weight), bias, eps,
                                      num_groups)
