"""Monocular depth estimation in mmseg (``DepthEstimator``) with any upsampler.

Why a package beside ``seg/`` and not a file in it: depth needs more than a head (a shared
depth-output / ground-truth / loss mixin used by two heads, the papers' SiLog loss, and a ResNet
that returns BTS's stride-2 skip), and ``seg/`` stays the home of the segmentation adapters.

Importing it (``mmdynup`` does, where mmseg is installed) registers in mmseg's ``MODELS``:
``UPerDepthHeadWithUpsampler``, ``SkipConcatDepthHead``, ``ScaleInvariantLogLoss`` and
``ResNetWithStem``. NYU Depth V2 configs: ``configs/depth/``.
"""
from .depth_head import DepthHeadMixin, OUTPUT_ACTIVATIONS
from .resnet_stem import ResNetWithStem
from .silog_loss import ScaleInvariantLogLoss, scale_invariant_log_loss
from .skip_depth_head import SkipConcatDepthHead
from .uper_depth_head import UPerDepthHeadWithUpsampler

__all__ = ['DepthHeadMixin', 'OUTPUT_ACTIVATIONS', 'ResNetWithStem', 'ScaleInvariantLogLoss',
           'SkipConcatDepthHead', 'UPerDepthHeadWithUpsampler', 'scale_invariant_log_loss']
