"""Transformer layers of the MIRL pretraining model, with the authors' parameter names.

MIRL (Huang et al., NeurIPS 2023) pretrains plain pre-LN ViT blocks (``Block``) and decodes with
``CrossBlock``: self-attention, then cross-attention to a memory of shallower features, then the
MLP. The submodule names (``norm1``, ``attn.qkv``, ``attn.proj``, ``cross_attn.q``,
``cross_attn.kv``, ``mlp.fc1``, ``mlp.fc2``, ``patch_embed.proj``, ``weight_v`` / ``weight_g``)
are the official PaddlePaddle ones, so official checkpoints load after transposing the Linear
weights (Paddle stores them as [in, out]; see :mod:`mmdynup.converters.mirl`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_divisible, check_positive_int


def multihead_attention(query: Tensor, key: Tensor, value: Tensor, num_heads: int) -> Tensor:
    """Scaled dot-product attention over ``num_heads`` heads, scale ``head_dim ** -0.5``.

    Args:
        query: (B, Nq, C); key, value: (B, Nk, C), C divisible by ``num_heads``.

    Returns:
        (B, Nq, C), the heads concatenated in channel order (head h owns channels
        ``h * C/heads .. (h + 1) * C/heads - 1``, the timm / official layout).
    """
    batch, query_len, channels = query.shape
    head_dims = channels // num_heads

    def split_heads(tensor: Tensor) -> Tensor:
        return tensor.reshape(batch, -1, num_heads, head_dims).transpose(1, 2)

    attended = F.scaled_dot_product_attention(split_heads(query), split_heads(key),
                                              split_heads(value))
    return attended.transpose(1, 2).reshape(batch, query_len, channels)


class Attention(nn.Module):
    """Multi-head self-attention with a joint ``qkv`` projection (output split [3, heads, d])."""

    def __init__(self, dims: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        check_divisible('dims', dims, num_heads, 'num_heads')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dims, dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        query, key, value = self.qkv(x).chunk(3, dim=-1)
        return self.proj(multihead_attention(query, key, value, self.num_heads))


class CrossAttention(nn.Module):
    """Multi-head attention from a query sequence to a memory: ``q`` and joint ``kv`` ([2, heads,
    d]) projections, as the official ``CrossAttention``."""

    def __init__(self, dims: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        check_divisible('dims', dims, num_heads, 'num_heads')
        self.num_heads = num_heads
        self.q = nn.Linear(dims, dims, bias=qkv_bias)
        self.kv = nn.Linear(dims, dims * 2, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """x (B, Nq, C), memory (B, Nm, C) -> (B, Nq, C)."""
        key, value = self.kv(memory).chunk(2, dim=-1)
        return self.proj(multihead_attention(self.q(x), key, value, self.num_heads))


class Mlp(nn.Module):
    """``fc1`` -> exact (erf) GELU -> ``fc2``."""

    def __init__(self, dims: int, hidden_dims: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; no layer scale."""

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=norm_eps)
        self.attn = Attention(dims, num_heads)
        self.norm2 = nn.LayerNorm(dims, eps=norm_eps)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))

    def forward(self, x: Tensor, memory: Optional[Tensor] = None) -> Tensor:
        """(B, N, C) -> (B, N, C); ``memory`` is accepted and ignored (MAE-decoder ablation)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossBlock(nn.Module):
    """MIRL decoder block: ``x += attn(norm1(x))``; ``x += cross_attn(norm2(x), norm3(memory))``;
    ``x += mlp(norm4(x))``."""

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=norm_eps)
        self.norm2 = nn.LayerNorm(dims, eps=norm_eps)
        self.norm3 = nn.LayerNorm(dims, eps=norm_eps)
        self.norm4 = nn.LayerNorm(dims, eps=norm_eps)
        self.attn = Attention(dims, num_heads)
        self.cross_attn = CrossAttention(dims, num_heads)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))

    def forward(self, x: Tensor, memory: Optional[Tensor] = None) -> Tensor:
        """x (B, N, C), memory (B, Nm, C) -> (B, N, C)."""
        if memory is None:
            raise ValueError('CrossBlock needs a memory tensor (B, Nm, C), got None')
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), self.norm3(memory))
        return x + self.mlp(self.norm4(x))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens: (B, C, H, W) -> (B, H/p * W/p, D), raster order."""

    def __init__(self, patch_size: int, in_channels: int, embed_dims: int):
        super().__init__()
        self.patch_size = check_positive_int('patch_size', patch_size)
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class InputNormalizedLinear(nn.Module):
    """Linear layer whose weight rows per *input* feature have norm ``weight_g`` (frozen at 1).

    The official prediction layers are Paddle ``weight_norm(Linear, dim=0)`` on an [in, out]
    weight with the gain frozen: ``W[i, :] = g[i] * v[i, :] / ||v[i, :]||``. In torch's [out, in]
    layout this normalises every column of ``weight_v`` over the outputs. ``weight_g`` is a
    buffer (never trained), so its name and value still travel with the checkpoint.

    Shapes: ``weight_v`` (out, in), ``weight_g`` (in,), ``bias`` (out,).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer('weight_g', torch.ones(in_features))

    @property
    def weight(self) -> Tensor:
        """The effective (out, in) weight."""
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=0))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)
