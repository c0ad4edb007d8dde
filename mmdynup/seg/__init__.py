"""MMSegmentation adapters: decode heads whose upsampling steps take any upsampler.

Importing this package registers ``UPerHeadWithUpsampler`` and ``SegformerHeadWithUpsampler`` in
mmseg's ``MODELS`` (a config loads it with ``custom_imports=dict(imports=['mmdynup'])``).
The config-to-upsampler logic shared with the mmdet neck lives in
:mod:`mmdynup.upsamplers.host_config`, which needs no host.
"""
import importlib.util

from ..upsamplers.host_config import build_head_upsampler, upsample_like

__all__ = ['build_head_upsampler', 'upsample_like']

if importlib.util.find_spec('mmseg') is not None:
    from .pyramid_upsampler import PyramidUpsampler, cascade_steps
    from .segformer_head import SegformerHeadWithUpsampler
    from .uper_head import UPerHeadWithUpsampler

    __all__ += ['PyramidUpsampler', 'SegformerHeadWithUpsampler', 'UPerHeadWithUpsampler',
                'cascade_steps']
