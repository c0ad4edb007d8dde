"""Backbones: the deeper plain ViTs of MIRL (mmseg ``MAE`` presets) and layer-wise lr decay.

Needs mmseg (``mmdynup/__init__.py`` imports this package only when mmseg is installed).
"""
from .layer_decay import LayerwiseLRDecayConstructor, is_no_decay, vit_layer_id
from .vit import MIRL_ARCHS, MIRLViT, segment_end_out_indices

__all__ = ['LayerwiseLRDecayConstructor', 'MIRLViT', 'MIRL_ARCHS', 'is_no_decay',
           'segment_end_out_indices', 'vit_layer_id']
