"""Layer-wise learning-rate decay for plain ViT backbones of any depth and any class name.

The fine-tuning recipe of BEiT / MAE, used by MIRL (Huang et al., NeurIPS 2023) for its deeper
ViTs: with N blocks, the patch embedding, cls token and position embedding get layer id 0, block i
gets id i + 1, and everything else (the backbone's final norm, necks, heads) id N + 1; a parameter
with id j trains at ``lr * decay_rate ** (N + 1 - j)``.

Unlike mmseg's ``LearningRateDecayOptimizerConstructor`` (which dispatches on "BEiT"/"MAE" in
the backbone's class name and, comparing bare names with prefixed ones, still decays
``pos_embed`` and ``cls_token``), this constructor reads the blocks from the backbone's
``layers`` or ``blocks`` ModuleList and exempts from weight decay every 1-D tensor (norms, biases,
layer-scale gammas), every ``*.bias``, the position embedding, cls / mask tokens and relative
position bias tables.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

_EMBEDDING_NAMES = ('cls_token', 'mask_token', 'pos_embed', 'dist_token')
_NO_DECAY_NAMES = ('pos_embed', 'cls_token', 'mask_token', 'dist_token',
                   'relative_position_bias_table')
_BLOCK_CONTAINERS = ('layers', 'blocks')


def vit_layer_id(name: str, num_layers: int, prefix: str = 'backbone.') -> int:
    """Layer id of parameter ``name`` (full model name) in a plain ViT with ``num_layers`` blocks:
    0 for the embeddings, i + 1 for block i, ``num_layers + 1`` for everything else."""
    if not name.startswith(prefix):
        return num_layers + 1
    local = name[len(prefix):]
    if local.split('.')[0] in _EMBEDDING_NAMES or local.startswith('patch_embed.'):
        return 0
    match = re.match(r'^(?:%s)\.(\d+)\.' % '|'.join(_BLOCK_CONTAINERS), local)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def is_no_decay(name: str, parameter: nn.Parameter) -> bool:
    """1-D tensors, biases, embeddings / tokens and relative position tables get no decay."""
    last = name.split('.')[-1]
    return parameter.ndim <= 1 or last == 'bias' or last in _NO_DECAY_NAMES


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
class LayerwiseLRDecayConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with layer-wise lr decay for plain ViT backbones.

    ``paramwise_cfg`` keys:

    * ``decay_rate`` (float, required; ``layer_decay_rate`` is accepted as an alias): the factor
      per block, e.g. 0.65 (MAE-B on ADE20K);
    * ``num_layers`` (int, optional): the backbone depth; default: the length of the backbone's
      ``layers`` (mmseg) or ``blocks`` (timm / official) ModuleList;
    * ``backbone`` (str, default ``'backbone'``): the attribute holding the ViT.

    Each param group holds one (layer id, decay / no decay) pair with ``lr = base_lr * scale``,
    and records ``lr_scale`` and ``group_name`` (mmengine's schedulers keep the ratios).

    Example:
        >>> optim_wrapper = dict(
        ...     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
        ...     constructor='LayerwiseLRDecayConstructor',
        ...     paramwise_cfg=dict(decay_rate=0.65))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.decay_rate = self._decay_rate(self.paramwise_cfg)

    @staticmethod
    def _decay_rate(paramwise_cfg: dict) -> float:
        rate = paramwise_cfg.get('decay_rate', paramwise_cfg.get('layer_decay_rate'))
        if rate is None:
            raise KeyError(f'paramwise_cfg must set decay_rate (e.g. 0.65), got {paramwise_cfg}')
        if not 0.0 < float(rate) <= 1.0:
            raise ValueError(f'decay_rate must be in (0, 1], got {rate}')
        return float(rate)

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        decay_rate = self.decay_rate
        num_layers, prefix = self._depth_and_prefix(module)
        groups: Dict[Tuple[int, bool], dict] = {}
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad:
                continue
            layer_id = vit_layer_id(name, num_layers, prefix)
            no_decay = is_no_decay(name, parameter)
            key = (layer_id, no_decay)
            if key not in groups:
                scale = decay_rate ** (num_layers + 1 - layer_id)
                groups[key] = dict(
                    params=[], lr=self.base_lr * scale, lr_scale=scale,
                    weight_decay=0.0 if no_decay else self.base_wd,
                    group_name=f'layer_{layer_id}_{"no_decay" if no_decay else "decay"}')
            groups[key]['params'].append(parameter)
        ordered = [groups[key] for key in sorted(groups)]
        print_log('layer-wise lr decay: ' + ', '.join(
            f'{group["group_name"]} x{group["lr_scale"]:.3g} ({len(group["params"])})'
            for group in ordered), logger='current')
        params.extend(ordered)

    def _depth_and_prefix(self, module: nn.Module) -> Tuple[int, str]:
        attribute = self.paramwise_cfg.get('backbone', 'backbone')
        num_layers: Optional[int] = self.paramwise_cfg.get('num_layers')
        if num_layers is None:
            num_layers = self._infer_depth(module, attribute)
        return int(num_layers), f'{attribute}.'

    @staticmethod
    def _infer_depth(module: nn.Module, attribute: str) -> int:
        backbone = getattr(module, attribute, None)
        if backbone is None:
            raise ValueError(f'the model has no attribute {attribute!r}; set paramwise_cfg '
                             f'backbone=<attribute of the ViT> (got a {type(module).__name__})')
        for container in _BLOCK_CONTAINERS:
            blocks = getattr(backbone, container, None)
            if isinstance(blocks, nn.ModuleList):
                return len(blocks)
        raise ValueError(f'cannot infer the depth of {type(backbone).__name__}: it has no '
                         f'"layers" or "blocks" ModuleList; set paramwise_cfg num_layers')


def _register_in_hosts() -> None:
    # Host scopes (mmseg, mmdet) resolve through their parent, but an explicit entry keeps
    # `Registry.get` from logging a fallback and works with `switch_scope_and_registry`.
    for module_name in ('mmseg.registry', 'mmdet.registry'):
        try:
            registry_module = __import__(module_name, fromlist=['OPTIM_WRAPPER_CONSTRUCTORS'])
        except ImportError:
            continue
        registry_module.OPTIM_WRAPPER_CONSTRUCTORS.register_module(
            module=LayerwiseLRDecayConstructor, force=True)


_register_in_hosts()
