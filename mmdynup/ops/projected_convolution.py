"""Projected convolution: a k x k convolution of a pointwise (1x1) projection, ``conv(W x + b)``,
without keeping the projection (FADE's encoder branch, Lu et al. ECCV 2022 / IJCV 2024: the
``compressor_en`` 1x1 convolution, then the 3x3 ``content_encoder``, on the full-resolution
guide).

Implementations (:mod:`mmdynup.ops.dispatch`):

* :func:`projected_convolution_reference` - the specification: the two convolutions. Autograd
  keeps the E-channel projection of x for the second convolution's backward, and x's gradient
  through this branch is a tensor of its own, added to x's other gradients afterwards (with
  x at a guide's resolution: two x-sized gradients at once, plus oneDNN's layout copies).
* :class:`ProjectedConvolution` - saves x and the weights only; the backward recomputes the
  projection (one matrix product) for the second convolution's weight gradient, frees it, and
  writes x's gradient with one matrix product. With ``share_input`` it also returns x itself as
  a second output: a consumer of that alias hands its gradient to this backward, which adds
  its own into it in place, so x gets one gradient buffer however many consumers it feeds.
  Used for contiguous (NCHW) tensors of one dtype outside autocast; otherwise the reference.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .normalized_projection import runs_fused


def projected_convolution_reference(x: Tensor, projection_weight: Tensor,
                                    projection_bias: Optional[Tensor], weight: Tensor,
                                    bias: Optional[Tensor], groups: int = 1) -> Tensor:
    """``conv2d(conv1x1(x, W_p, b_p), W, b, padding=k // 2, groups)`` (the specification).

    Args:
        x: (B, C, H, W).
        projection_weight: (E, C, 1, 1); projection_bias: (E,) or None.
        weight: (O, E / groups, k, k), k odd; bias: (O,) or None.
        groups: groups of the k x k convolution.

    Returns:
        (B, O, H, W).
    """
    projected = F.conv2d(x, projection_weight, projection_bias)
    return F.conv2d(projected, weight, bias, padding=weight.shape[-1] // 2, groups=groups)


class ProjectedConvolution(torch.autograd.Function):
    """``conv(W_p x + b_p)`` recomputing the projection in backward.

    Inputs: x (B, C, H, W) contiguous, W_p (E, C), b_p (E,) or None, weight (O, E / groups, k, k),
    bias (O,) or None, groups. Outputs: (B, O, H, W) and an alias of x (see the module
    docstring; its gradient, when it has one, becomes x's gradient buffer).
    """

    @staticmethod
    def forward(ctx, x: Tensor, projection_weight: Tensor, projection_bias: Optional[Tensor],
                weight: Tensor, bias: Optional[Tensor], groups: int) -> Tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, projection_weight, projection_bias, weight)
        ctx.groups, ctx.has_bias = groups, bias is not None
        out = F.conv2d(_project(x, projection_weight, projection_bias), weight, bias,
                       padding=weight.shape[-1] // 2, groups=groups)
        return out, x.view_as(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor, grad_alias: Optional[Tensor]):
        x, projection_weight, projection_bias, weight = ctx.saved_tensors
        need_x, need_pw, need_pb, need_w, need_b = ctx.needs_input_grad[:5]
        padding, groups = weight.shape[-1] // 2, ctx.groups
        grad_weight = grad_bias = None
        if need_w or need_b:
            projected = _project(x, projection_weight, projection_bias)
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad_out, projected, weight, [weight.shape[0]] if ctx.has_bias else None,
                [1, 1], [padding, padding], [1, 1], False, [0, 0], groups,
                [False, need_w, need_b and ctx.has_bias])
            projected = None  # freed before the projection's gradient is allocated
        grad_x = grad_pw = grad_pb = None
        if need_x or need_pw or need_pb:
            # The input gradient of a stride-1, padding-k//2 convolution.
            grad_projected = F.conv_transpose2d(grad_out, weight, padding=padding, groups=groups)
            batch, channels = x.shape[:2]
            grad_flat = grad_projected.reshape(batch, grad_projected.shape[1], -1)  # (B, E, N)
            x_flat = x.reshape(batch, channels, -1)
            if need_pw:  # per sample: a batched product would copy x transposed
                grad_pw = sum(grad_flat[b] @ x_flat[b].t() for b in range(batch))
            if need_pb and projection_bias is not None:
                grad_pb = grad_flat.sum(dim=(0, 2))
            if need_x:
                if grad_alias is not None and grad_alias.is_contiguous():
                    # The alias's gradient is a fresh buffer of x's shape: add into it in place.
                    grad_x = grad_alias
                else:
                    grad_x = x.new_zeros(x.shape) if grad_alias is None else grad_alias.clone(
                        memory_format=torch.contiguous_format)
                grad_x_flat = grad_x.view(batch, channels, -1)
                for b in range(batch):
                    grad_x_flat[b].addmm_(projection_weight.t(), grad_flat[b])
        return grad_x, grad_pw, grad_pb, grad_weight, grad_bias, None


def _project(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``W x + b`` at every pixel: (B, C, H, W) contiguous, (E, C), (E,) -> (B, E, H, W)."""
    batch, channels = x.shape[:2]
    x_flat = x.reshape(batch, channels, -1)
    projected = x.new_empty(batch, weight.shape[0], x_flat.shape[2])
    for b in range(batch):  # per sample: a (E, C) @ (B, C, N) matmul would copy x transposed
        if bias is None:
            torch.mm(weight, x_flat[b], out=projected[b])
        else:
            torch.addmm(bias[:, None], weight, x_flat[b], out=projected[b])
    return projected.view(batch, -1, *x.shape[2:])


def projected_convolution(x: Tensor, projection_weight: Tensor,
                          projection_bias: Optional[Tensor], weight: Tensor,
                          bias: Optional[Tensor], groups: int = 1, share_input: bool = False,
                          impl: Optional[str] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """``conv(W_p x + b_p)``; shapes as :func:`projected_convolution_reference`.

    Args:
        share_input: also return x, to be used in its place by x's other consumers (the fused
            path then gives x one gradient buffer; the reference returns x itself). The
            alias is for further ops only: the fused backward adds into the gradient it
            receives for it, which must therefore not be a caller's tensor (as it would be for
            ``alias.backward(gradient)``).
        impl: as in :mod:`mmdynup.ops.dispatch` (every fast name runs
            :class:`ProjectedConvolution`).

    Returns:
        (B, O, H, W), or with ``share_input`` the pair (that, x).
    """
    if not (runs_fused(impl, x, projection_weight, projection_bias, weight, bias)
            and x.is_contiguous()):
        out = projected_convolution_reference(x, projection_weight, projection_bias, weight, bias,
                                              groups)
        return (out, x) if share_input else out
    out, alias = ProjectedConvolution.apply(
        x, projection_weight.reshape(projection_weight.shape[0], -1), projection_bias, weight,
        bias, groups)
    return (out, alias) if share_input else out
