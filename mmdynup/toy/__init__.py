"""FADE's toy study of upsamplers (Lu et al., ECCV 2022): a small encoder-decoder whose decoder
upsamples with any registered operator, on a region-sensitive task (segmentation of the synthetic
scenes) and a detail-sensitive one (reconstruction of photo patches). ``tools/demo.py`` runs it.

Importing this package registers in mmseg's registries (configs load it with
``custom_imports=dict(imports=['mmdynup', 'mmdynup.toy'])``): ``ToyEncoder``, ``ToyDecodeHead``
and ``ToyReconstructor`` (MODELS), ``PhotoPatches`` (DATASETS), ``BoundaryIoUMetric`` and
``ReconstructionMetric`` (METRICS).
"""
from mmseg.registry import DATASETS, METRICS, MODELS

from .metrics import (BoundaryIoUMetric, ReconstructionMetric, boundary_band, boundary_counts,
                      mean_absolute_error, psnr, ssim)
from .network import ToyDecoder, ToyEncoder, upsampler_parameters
from .reconstruction import PhotoPatches, ToyReconstructor, load_sample_photo
from .segmentation import ToyDecodeHead

for _registry, _classes in ((MODELS, (ToyEncoder, ToyDecodeHead, ToyReconstructor)),
                            (DATASETS, (PhotoPatches,)),
                            (METRICS, (BoundaryIoUMetric, ReconstructionMetric))):
    for _cls in _classes:
        _registry.register_module(module=_cls, force=True)

__all__ = ['BoundaryIoUMetric', 'PhotoPatches', 'ReconstructionMetric', 'ToyDecodeHead',
           'ToyDecoder', 'ToyEncoder', 'ToyReconstructor', 'boundary_band', 'boundary_counts',
           'load_sample_photo', 'mean_absolute_error', 'psnr', 'ssim', 'upsampler_parameters']
