"""MMDetection adapters: FPN necks (mmdet's ``FPN`` and ``FPN_CARAFE`` topologies) whose top-down
path takes any upsampler."""
from .fpn import FPNWithUpsampler, added_parameters, upsampler_config
from .fpn_carafe import FPNCARAFEWithUpsampler

__all__ = ['FPNWithUpsampler', 'FPNCARAFEWithUpsampler', 'added_parameters', 'upsampler_config']
