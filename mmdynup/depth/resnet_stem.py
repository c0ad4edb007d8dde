"""mmseg's ResNet that also returns its stem output: the stride-2 skip of BTS's ResNet encoder.

BTS (cleinc/bts ``encoder``) and the depth toolbox's ResNet take five features from a ResNet-50:
the stem (conv 7x7 stride 2, BN, ReLU: 64 channels at 1/2, before the max pool) and the four
stages (256, 512, 1024, 2048 channels at 1/4 .. 1/32). mmseg's ``ResNet`` returns only the
stages; this subclass runs mmseg's forward unchanged and records the max pool's input.
"""
from __future__ import annotations

from typing import Tuple

from mmseg.models.backbones import ResNet
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class ResNetWithStem(ResNet):
    """mmseg ``ResNet`` returning ``(stem, *stages[out_indices])``.

    The stem feature is the input of the max pool: (B, stem_channels, ceil(H / 2), ceil(W / 2))
    (``deep_stem`` or not); the stages follow as in mmseg. Arguments are mmseg ``ResNet``'s, so
    ``torchvision://resnet50`` weights load as for mmseg's ResNet-50.
    """

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        recorded = []
        hook = self.maxpool.register_forward_pre_hook(
            lambda module, args: recorded.append(args[0]))
        try:
            stages = super().forward(x)
        finally:
            hook.remove()
        return (recorded[0], *stages)
