"""MMDetection adapters: FPN necks whose top-down path takes any upsampler."""
from .fpn import FPNWithUpsampler, added_parameters, upsampler_config

__all__ = ['FPNWithUpsampler', 'added_parameters', 'upsampler_config']
