"""Converter for the authors' IndexNet index blocks (poppinace/indexnet_matting
``scripts/hlindex.py``: ``HolisticIndexBlock``, ``DepthwiseO2OIndexBlock``,
``DepthwiseM2OIndexBlock``) -> :class:`~mmdynup.upsamplers.indexnet.IndexNet`.

The official blocks take ``(inp, use_nonlinear=False, use_context=False, batch_norm=...)`` and
their forward ``m(x)`` maps the high-resolution encoder feature to ``(idx_en, idx_de)``. Our
upsampler holds the same block as ``index_block`` (same layer names, so the rename table is one
prefix), and ``official_call`` returns that pair from it. ``batch_norm`` is a class in the
official code; the reference records store its dotted name (``'torch.nn.BatchNorm2d'``).
"""
from __future__ import annotations

import functools
from typing import Mapping

from torch import Tensor

from ..upsamplers.indexnet import IndexNet
from .official import (OfficialConversion, load_converted, register_official,
                       refuse_unknown_arguments, rename_keys)

#: Official class -> our ``index_block`` kind and the official default of ``batch_norm``.
OFFICIAL_BLOCKS = {
    'hlindex.HolisticIndexBlock': ('holistic', None),
    'hlindex.DepthwiseO2OIndexBlock': ('o2o', 'BatchNorm2d'),
    'hlindex.DepthwiseM2OIndexBlock': ('m2o', 'BatchNorm2d'),
}
_ARGUMENTS = ('inp', 'use_nonlinear', 'use_context', 'batch_norm')
#: Official layout -> ours: the block's layers move under ``index_block.`` unchanged.
RENAMES = [(name, f'index_block.{name}')
           for name in ('indexnet', 'indexnet1', 'indexnet2', 'indexnet3', 'indexnet4')]


def index_block_arguments(official: str, kwargs: dict) -> dict:
    """The official constructor arguments -> ours (an unknown or missing one is a TypeError)."""
    refuse_unknown_arguments(official, kwargs, _ARGUMENTS)
    if 'inp' not in kwargs:
        raise TypeError(f'{official} needs inp (the channels of its input); got {kwargs}')
    kind, default_norm = OFFICIAL_BLOCKS[official]
    channels = kwargs['inp']
    return dict(in_channels=channels, guide_channels=channels, index_block=kind,
                use_nonlinear=kwargs.get('use_nonlinear', False),
                use_context=kwargs.get('use_context', False),
                batch_norm=kwargs.get('batch_norm', default_norm))


def official_index_block_forward(module: IndexNet, inputs: Mapping[str, Tensor]):
    """The official ``forward(x)``: ``(idx_en, idx_de)`` of the encoder feature ``x``."""
    return module.index_block(inputs['x'])


def convert_index_block(official: str, kwargs: dict,
                        state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """The official index block ``official`` with ``state_dict`` -> loaded :class:`IndexNet`
    (guided by the block's input; ``official_forward(x=...)`` returns ``(idx_en, idx_de)``)."""
    module = IndexNet(**index_block_arguments(official, kwargs))
    renamed, official_names = rename_keys(state_dict, RENAMES)
    load_converted(module, renamed, official)
    # A converted block is for inference, like the authors' released model: BatchNorm uses the
    # loaded running statistics (call .train() to fine-tune).
    module.eval()
    return OfficialConversion(module, official_names, input_roles={'x': 'guide'},
                              official_call=official_index_block_forward)


for _official in OFFICIAL_BLOCKS:
    register_official(_official)(functools.partial(convert_index_block, _official))
