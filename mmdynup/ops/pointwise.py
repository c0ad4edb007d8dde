"""Several 1x1 convolutions of one feature map as a single batched matrix product.

DySample and FRFU predict their offsets (and gates / scopes) with 1x1 convolutions. On the CPU
``conv2d``'s 1x1 path copies its input and its backward is slow: one ``bmm`` over the flattened
map is 3x faster forward + backward (2 x 256 x 128 x 128, two C -> 9 convs), reads the map once
for all convs, and is counted by the FLOP analysers like the convolution it replaces.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn


def pointwise(x: Tensor, *convs: nn.Conv2d) -> Tuple[Tensor, ...]:
    """The 1x1 convolutions ``convs`` (each with or without bias) of x (B, C, H, W).

    Returns one (B, O_i, H, W) tensor per conv, in its order (views of one result).
    """
    batch, _, height, width = x.shape
    weight = torch.cat([conv.weight.flatten(1) for conv in convs]) if len(convs) > 1 \
        else convs[0].weight.flatten(1)
    out = torch.bmm(weight.expand(batch, -1, -1), x.flatten(2))
    if any(conv.bias is not None for conv in convs):
        biases = [conv.weight.new_zeros(conv.out_channels) if conv.bias is None else conv.bias
                  for conv in convs]
        bias = torch.cat(biases) if len(biases) > 1 else biases[0]
        # bmm and a separate bias add (not baddbmm, which FLOP counters have no rule for).
        out = out + bias[:, None]
    return out.view(batch, -1, height, width).split([conv.out_channels for conv in convs], 1)
