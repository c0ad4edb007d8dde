"""Masking, target and loss of MIRL pretraining (pure functions).

MIRL (Huang et al., "Masked Image Residual Learning for Scaling Deeper Vision Transformers",
NeurIPS 2023, Sec. 3 and Eq. 4-5): MAE random masking, a per-patch normalised pixel target, and
the paired loss ``L = 1/K sum_i L(i, 2K+1-i)`` where ``L(a, b)`` is the masked-patch MSE of the
*sum* of decoder a's and decoder b's predictions: the deep decoder learns the residual that the
shallow one leaves.
"""
from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor


class Masking(NamedTuple):
    """Result of :func:`random_masking`.

    Attributes:
        ids_keep: (N, n_visible) indices of the kept patches, in ascending-noise order.
        ids_restore: (N, L) inverse permutation: position of each patch in the shuffled order.
        mask: (N, L) 1 = masked, 0 = visible, in the original patch order.
    """

    ids_keep: Tensor
    ids_restore: Tensor
    mask: Tensor


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """``int(L * (1 - r))``, the official rounding (196 patches at r = 0.75 -> 49)."""
    return int(num_patches * (1 - mask_ratio))


def random_masking(noise: Tensor, mask_ratio: float) -> Masking:
    """MAE per-sample random masking driven by ``noise`` (N, L): the smallest noise values are
    kept. With ``noise = torch.rand(N, L)`` this is the official ``random_masking``."""
    if noise.dim() != 2:
        raise ValueError(f'noise must be (N, L), got shape {tuple(noise.shape)}')
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio!r}')
    batch, num_patches = noise.shape
    keep = num_visible(num_patches, mask_ratio)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    shuffled_mask = torch.ones(batch, num_patches, device=noise.device)
    shuffled_mask[:, :keep] = 0
    mask = torch.gather(shuffled_mask, 1, ids_restore)
    return Masking(ids_shuffle[:, :keep], ids_restore, mask)


def gather_tokens(tokens: Tensor, indices: Tensor) -> Tensor:
    """tokens (N, L, C), indices (N, M) -> (N, M, C), row m of sample n being
    ``tokens[n, indices[n, m]]``."""
    return torch.gather(tokens, 1, indices[..., None].expand(-1, -1, tokens.shape[-1]))


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(N, C, H, W) -> (N, H/p * W/p, p*p*C); each patch flattened in (row, column, channel)
    order, patches in raster order (the official ``einsum('nchpwq->nhwpqc')``)."""
    batch, channels, height, width = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f'image size {height}x{width} must be divisible by '
                         f'patch_size={patch_size}')
    rows, columns = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, rows, patch_size, columns, patch_size)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * columns, -1)


def normalized_pixel_target(images: Tensor, patch_size: int, eps: float = 1e-6) -> Tensor:
    """Per-patch normalised pixels (N, L, p*p*C): ``(x - mean) / sqrt(var + eps)`` over each
    patch's values, ``var`` unbiased (as the official Paddle ``var``). Always on in MIRL."""
    patches = patchify(images, patch_size)
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def residual_pairs(num_segments: int) -> List[Tuple[int, int]]:
    """Pairs (shallow, deep) = (i, 2K-1-i), i < K, of 0-based decoder indices: (0, 5), (1, 4),
    (2, 3) for six segments."""
    if num_segments < 2 or num_segments % 2:
        raise ValueError(f'num_segments must be an even number >= 2, got {num_segments}')
    return [(i, num_segments - 1 - i) for i in range(num_segments // 2)]


def masked_patch_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over the masked patches (whole batch) of the per-patch mean squared error."""
    per_patch = ((prediction - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def paired_residual_loss(preds: Sequence[Tensor], target: Tensor,
                         mask: Tensor) -> Tuple[Tensor, List[Tensor]]:
    """MIRL loss over 2K predictions (N, L, P), shallow to deep; ``mask`` (N, L), 1 = masked.

    Returns:
        The total loss ``mean_i L(i, 2K-1-i)`` and the list of pair losses, shallowest pair first.
    """
    pair_losses = [masked_patch_mse(preds[shallow] + preds[deep], target, mask)
                   for shallow, deep in residual_pairs(len(preds))]
    return sum(pair_losses) / len(pair_losses), pair_losses
