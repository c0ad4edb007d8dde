"""Fixed 2-D sine-cosine position embedding of MAE, as the MIRL encoder and decoders use it.

MIRL (Huang et al., "Masked Image Residual Learning for Scaling Deeper Vision Transformers",
NeurIPS 2023) keeps MAE's frozen tables: for a g x g patch grid and width D, the first D/2
channels encode the patch's grid column and the last D/2 its grid row, each as
``[sin(pos * w_i), cos(pos * w_i)]`` with ``w_i = 10000 ** (-i / (D / 4))``, i = 0 .. D/4 - 1.
The cls slot (row 0) is all zeros.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_divisible, check_positive_int


def sincos_1d(positions: Tensor, dims: int) -> Tensor:
    """(M,) positions -> (M, dims) table ``[sin(p w), cos(p w)]``, computed in float64."""
    frequencies = torch.arange(dims // 2, dtype=torch.float64) / (dims / 2.0)
    frequencies = 1.0 / 10000 ** frequencies
    angles = positions.to(torch.float64)[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_position_embedding_2d(embed_dims: int, grid_size: int, cls_token: bool = True,
                                 dtype: torch.dtype = torch.float32) -> Tensor:
    """The (1 + g*g, D) table (or (g*g, D) without ``cls_token``), rows in raster order.

    Args:
        embed_dims: D, divisible by 4 (two axes, each a sin and a cos half).
        grid_size: g, patches per side.
        cls_token: prepend the all-zero cls row.
        dtype: dtype of the result; the table is computed in float64 and cast once, like the
            official numpy code (float64 tables cast to float32).
    """
    embed_dims = check_positive_int('embed_dims', embed_dims)
    grid_size = check_positive_int('grid_size', grid_size)
    check_divisible('embed_dims', embed_dims, 4, 'the 4 sin/cos halves of the two grid axes')
    rows, columns = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size),
                                   indexing='ij')
    table = torch.cat([sincos_1d(columns.reshape(-1), embed_dims // 2),
                       sincos_1d(rows.reshape(-1), embed_dims // 2)], dim=1)
    if cls_token:
        table = torch.cat([table.new_zeros(1, embed_dims), table], dim=0)
    return table.to(dtype)
