"""MMDetection adapters: FPN necks (mmdet's ``FPN`` and ``FPN_CARAFE`` topologies) and the
path-aggregation necks (``PAFPN``, YOLOX's, RTMDet's) whose top-down path takes any upsampler,
and a Mask R-CNN mask head upsampling with any upsampler."""
from .fpn import FPNWithUpsampler, added_parameters, upsampler_config
from .fpn_carafe import FPNCARAFEWithUpsampler
from .mask_head import FCNMaskHeadWithUpsampler
from .pafpn import CSPNeXtPAFPNWithUpsampler, PAFPNWithUpsampler, YOLOXPAFPNWithUpsampler

__all__ = ['FPNWithUpsampler', 'FPNCARAFEWithUpsampler', 'FCNMaskHeadWithUpsampler',
           'PAFPNWithUpsampler', 'YOLOXPAFPNWithUpsampler', 'CSPNeXtPAFPNWithUpsampler',
           'added_parameters', 'upsampler_config']
