"""MIRL pretraining (Huang et al., NeurIPS 2023): masked image residual learning for deep ViTs.

Pure torch + mmengine; the fine-tuning backbones (mmseg ``MAE`` presets) are in
:mod:`mmdynup.backbones`, checkpoint conversion in :mod:`mmdynup.converters.mirl`.
"""
from .data import MIRLSyntheticImages
from .model import MIRLPretrainer, equal_segment_ends
from .objective import (normalized_pixel_target, paired_residual_loss, patchify, random_masking,
                        residual_pairs)
from .position import sincos_position_embedding_2d

__all__ = ['MIRLPretrainer', 'MIRLSyntheticImages', 'equal_segment_ends', 'normalized_pixel_target',
           'paired_residual_loss', 'patchify', 'random_masking', 'residual_pairs',
           'sincos_position_embedding_2d']
