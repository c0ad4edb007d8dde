"""MMDetection adapters: FPN necks (mmdet's ``FPN`` and ``FPN_CARAFE`` topologies) whose top-down
path takes any upsampler, and a Mask R-CNN mask head upsampling with any upsampler."""
from .fpn import FPNWithUpsampler, added_parameters, upsampler_config
from .fpn_carafe import FPNCARAFEWithUpsampler
from .mask_head import FCNMaskHeadWithUpsampler

__all__ = ['FPNWithUpsampler', 'FPNCARAFEWithUpsampler', 'FCNMaskHeadWithUpsampler',
           'added_parameters', 'upsampler_config']
