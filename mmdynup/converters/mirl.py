"""MIRL checkpoints -> mmdynup: the pretraining model, and mmseg ``MAE``-layout backbones.

Sources (MIRL, Huang et al., NeurIPS 2023; authors' release ``russellllaputa/MIRL``, PaddlePaddle):

* (a) official Paddle pretraining checkpoints, ``ckpt['model']``: every ``MIRLViT`` tensor under
  its official name, Linear weights stored [in, out] (the transpose of torch), values plain numpy
  arrays or Paddle's pickled ``(name, ndarray)`` tuples. ``.pdparams`` files are pickles: they
  are read by :func:`load_pdparams`, which accepts only plain containers and numpy arrays;
* (b) PyTorch MAE-layout exports, ``ckpt['model']``: the encoder keys only, torch layout;
* (c) our own :class:`~mmdynup.mirl.MIRLPretrainer` checkpoints, ``ckpt['state_dict']``: the
  official names, torch layout.

:func:`mirl_to_mmseg` turns any of them into the keys of mmseg's ``MAE`` backbone (and so of
:mod:`mmdynup.backbones`), following mmseg's ``beit2mmseg`` renames; the decoders, ``norm_low``
and the segment norms ``norm0..`` are pretraining-only and are dropped.
:func:`convert_official_mirl` (registered for ``'models_mirl.MIRLViT'``) builds our pretraining
model from the official constructor arguments and a Paddle-layout state dict.
"""
from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .checkpoint_io import ConversionReport, register_checkpoint_source
from .official import OfficialConversion, load_converted, register_official

OFFICIAL = 'models_mirl.MIRLViT'

# Official constructor defaults (models_mirl.MIRLViT.__init__).
_OFFICIAL_DEFAULTS = dict(img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24,
                          num_heads=16, decoder_embed_dims=[512, 512, 512, 512],
                          decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
                          norm_layer='partial(paddle.nn.LayerNorm, epsilon=1e-6)',
                          norm_pix_loss=False, out_indices=[5, 7], queue_size=8192,
                          temperature=0.07, weight_norm_pred=False)
# Accepted by the official constructor but without effect on the model (see the reference README).
_UNUSED_OFFICIAL_ARGUMENTS = ('norm_pix_loss', 'queue_size', 'temperature')
_OFFICIAL_NUM_DECODERS = 6


# --------------------------------------------------------------------------- layouts
def is_paddle_linear_weight(name: str, tensor) -> bool:
    """Paddle Linear weights are the 2-D ``*.weight`` / ``*.weight_v`` tensors (conv weights
    are 4-D, LayerNorm weights and ``weight_g`` 1-D, tokens and position tables 3-D)."""
    return len(tensor.shape) == 2 and name.endswith(('.weight', '.weight_v'))


def transpose_linear_weights(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Paddle [in, out] <-> torch [out, in] for every Linear weight (its own inverse)."""
    return {name: (tensor.t().contiguous() if is_paddle_linear_weight(name, tensor) else tensor)
            for name, tensor in state_dict.items()}


def _parse_norm_eps(norm_layer) -> float:
    if norm_layer is None:
        return 1e-6
    if isinstance(norm_layer, (int, float)):
        return float(norm_layer)
    text = str(norm_layer)
    if 'LayerNorm' not in text:
        raise ValueError(f'norm_layer must be a LayerNorm (e.g. "partial(paddle.nn.LayerNorm, '
                         f'epsilon=1e-6)"), got {norm_layer!r}')
    match = re.search(r'epsilon\s*=\s*([0-9.eE+-]+)', text)
    return float(match.group(1)) if match else 1e-5  # Paddle's LayerNorm default epsilon


def official_kwargs_to_ours(kwargs: Mapping) -> dict:
    """``models_mirl.MIRLViT`` constructor arguments -> :class:`MIRLPretrainer` arguments.

    The official class hard-codes six decoders (five ``out_indices``, six decoder widths) and
    concatenates decoder embeddings into one memory, so every decoder width must be equal.
    """
    unknown = sorted(set(kwargs) - set(_OFFICIAL_DEFAULTS))
    if unknown:
        raise TypeError(f'unknown {OFFICIAL} arguments {unknown}; accepted: '
                        f'{sorted(_OFFICIAL_DEFAULTS)}')
    args = {**_OFFICIAL_DEFAULTS, **kwargs}
    decoder_dims = list(args['decoder_embed_dims'])
    out_indices = list(args['out_indices'])
    if len(decoder_dims) != _OFFICIAL_NUM_DECODERS or len(out_indices) != 5:
        raise ValueError(f'{OFFICIAL} builds exactly six decoders: it needs 6 decoder_embed_dims '
                         f'and 5 out_indices, got {len(decoder_dims)} ({decoder_dims}) and '
                         f'{len(out_indices)} ({out_indices}); the official constructor raises '
                         f'IndexError for these arguments')
    if len(set(decoder_dims)) != 1:
        raise ValueError(f'decoder_embed_dims must be equal (the memory concatenates the '
                         f'decoders\' embeddings), got {decoder_dims}')
    return dict(img_size=args['img_size'], patch_size=args['patch_size'],
                in_channels=args['in_chans'], embed_dims=args['embed_dim'],
                num_layers=args['depth'], num_heads=args['num_heads'],
                mlp_ratio=float(args['mlp_ratio']), out_indices=out_indices,
                decoder_embed_dims=decoder_dims[0], decoder_depth=args['decoder_depth'],
                decoder_num_heads=args['decoder_num_heads'],
                weight_norm_pred=bool(args['weight_norm_pred']),
                norm_eps=_parse_norm_eps(args['norm_layer']))


@register_official(OFFICIAL)
def convert_official_mirl(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """Official ``MIRLViT`` kwargs + Paddle-layout state dict -> our loaded pretraining model.

    The names are identical; only the Linear weights are transposed. ``official_names`` maps
    every name to itself (gradients of Linear weights must be transposed to compare).
    """
    from ..mirl import MIRLPretrainer
    model = MIRLPretrainer(**official_kwargs_to_ours(kwargs))
    converted = transpose_linear_weights(state_dict)
    load_converted(model, converted, OFFICIAL)
    return OfficialConversion(module=model, official_names={name: name for name in converted},
                              input_roles={'imgs': 'x'})


# --------------------------------------------------------------------------- .pdparams
class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers and numpy arrays (never arbitrary classes)."""

    _ALLOWED = {
        ('collections', 'OrderedDict'), ('builtins', 'tuple'), ('builtins', 'list'),
        ('builtins', 'dict'), ('builtins', 'set'), ('builtins', 'frozenset'),
        ('numpy', 'ndarray'), ('numpy', 'dtype'),
        ('numpy.core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
        ('numpy._core.multiarray', '_reconstruct'), ('numpy._core.multiarray', 'scalar'),
        ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f'refusing to load {module}.{name}: a .pdparams checkpoint may hold only dicts, '
                f'lists, tuples and numpy arrays')
        if module.startswith('numpy._core') and not hasattr(np, '_core'):
            module = module.replace('numpy._core', 'numpy.core')  # numpy 1.x reading a 2.x file
        return super().find_class(module, name)


def load_pdparams(source: Union[str, bytes, io.IOBase]) -> dict:
    """Read a Paddle ``.pdparams`` / ``.pdopt`` pickle (path, bytes or binary file) safely."""
    if isinstance(source, bytes):
        return _ArraysOnlyUnpickler(io.BytesIO(source), encoding='latin1').load()
    if isinstance(source, (str, bytes)) or hasattr(source, '__fspath__'):
        with open(source, 'rb') as handle:
            return _ArraysOnlyUnpickler(handle, encoding='latin1').load()
    return _ArraysOnlyUnpickler(source, encoding='latin1').load()


def _to_tensor(name: str, value) -> Tensor:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]  # Paddle pickles a tensor as (parameter name, ndarray)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Tensor):
        return value
    raise TypeError(f'checkpoint entry {name!r} must be an array or tensor, '
                    f'got {type(value).__name__}')


def unwrap_checkpoint(checkpoint: Mapping) -> Dict[str, Tensor]:
    """The tensors of ``checkpoint['state_dict']``, ``['model']`` or the raw dict, as torch
    tensors, without a ``module.`` prefix; Paddle's ``StructuredToParameterName@@`` is dropped."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    tensors = {}
    for name, value in checkpoint.items():
        if name == 'StructuredToParameterName@@':
            continue
        name = name[len('module.'):] if name.startswith('module.') else name
        tensors[name] = _to_tensor(name, value)
    return tensors


# --------------------------------------------------------------------------- backbone
#: Tensors of MIRL checkpoints that only pretraining or classification uses.
PRETRAINING_ONLY = re.compile(r'^(decoder_.*|mask_token\d+|norm_low\..*|norm\d+\..*|'
                              r'fc_norm\..*|head\..*)$')

#: Ordered renames official -> mmseg ``MAE`` (beit2mmseg rules); the first match wins.
MMSEG_MAE_RENAMES: Tuple[Tuple[str, str], ...] = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^norm\.', 'ln1.'),
)


def checkpoint_architecture(state_dict: Mapping[str, Tensor]) -> Tuple[int, int]:
    """(depth, width) of a MIRL / MAE encoder state dict (official names)."""
    block_ids = {int(match.group(1)) for name in state_dict
                 for match in [re.match(r'^blocks\.(\d+)\.', name)] if match}
    if 'cls_token' not in state_dict or not block_ids:
        raise ValueError(f'not a ViT encoder checkpoint: expected "cls_token" and "blocks.<i>.*" '
                         f'keys, got {sorted(state_dict)[:8]}...')
    return max(block_ids) + 1, int(state_dict['cls_token'].shape[-1])


def _is_paddle_layout(state_dict: Mapping[str, Tensor], width: int) -> bool:
    # qkv is the one unambiguous Linear: Paddle [D, 3D], torch [3D, D].
    return tuple(state_dict['blocks.0.attn.qkv.weight'].shape) == (width, 3 * width)


def _pretraining_only(name: str, final_norm: bool) -> Optional[str]:
    """Why ``name`` is not a backbone tensor, or None when it is."""
    if name.startswith('norm.') and not final_norm:
        return 'final encoder norm (kept as ln1 only with final_norm=True)'
    if PRETRAINING_ONLY.match(name):
        return ('classification head' if name.startswith(('fc_norm.', 'head.'))
                else 'pretraining only (decoders, mask tokens, norm_low, segment norms)')
    return None


def convert_mirl_encoder(checkpoint: Mapping, num_layers: Optional[int] = None,
                         embed_dims: Optional[int] = None, final_norm: bool = False,
                         layout: Optional[str] = None):
    """:func:`mirl_to_mmseg` with its accounting: returns ``(state_dict, sources, dropped,
    layout)``, ``sources`` mapping each output key to its checkpoint key and ``dropped`` each
    unused checkpoint key to the reason."""
    state_dict = unwrap_checkpoint(checkpoint)
    depth, width = checkpoint_architecture(state_dict)
    if (num_layers is not None and depth != num_layers) or \
            (embed_dims is not None and width != embed_dims):
        raise ValueError(f'the checkpoint holds a ViT of depth {depth} and width {width}, but the '
                         f'backbone expects depth {num_layers} and width {embed_dims}; pick the '
                         f'backbone preset that matches the checkpoint')
    if layout is None:
        layout = 'paddle' if _is_paddle_layout(state_dict, width) else 'torch'
    if layout not in ('paddle', 'torch'):
        raise ValueError(f"layout must be 'paddle', 'torch' or None (detect), got {layout!r}")
    if layout == 'paddle':
        state_dict = transpose_linear_weights(state_dict)
    converted, sources, dropped = OrderedDict(), {}, {}
    for name, tensor in state_dict.items():
        reason = _pretraining_only(name, final_norm)
        if reason is not None:
            dropped[name] = reason
            continue
        new_name = name
        for pattern, replacement in MMSEG_MAE_RENAMES:
            new_name, count = re.subn(pattern, replacement, name)
            if count:
                break
        converted[new_name] = tensor
        sources[new_name] = name
    return converted, sources, dropped, layout


def mirl_to_mmseg(checkpoint: Mapping, num_layers: Optional[int] = None,
                  embed_dims: Optional[int] = None, final_norm: bool = False,
                  layout: Optional[str] = None) -> Dict[str, Tensor]:
    """Any MIRL / MAE-layout checkpoint -> the state dict of an mmseg ``MAE`` backbone.

    Args:
        checkpoint: a loaded checkpoint (dict with ``model`` / ``state_dict`` or raw tensors).
        num_layers, embed_dims: the target backbone's depth and width; a checkpoint of another
            architecture is refused with a message naming both.
        final_norm: keep the encoder's final LayerNorm ``norm`` as ``ln1`` (for a backbone built
            with ``final_norm=True``); otherwise it is dropped with the pretraining-only keys.
        layout: ``'paddle'`` ([in, out] Linear weights) or ``'torch'``; default: detected from
            the qkv weight shape.

    Returns:
        mmseg ``MAE`` keys (``patch_embed.projection.*``, ``cls_token``, ``pos_embed`` at the
        checkpoint's grid, ``layers.<i>.{ln1, attn.qkv, attn.proj, ln2, ffn.layers.0.0,
        ffn.layers.1}.*`` and ``ln1.*`` with ``final_norm``), torch layout. The backbone's
        layer-scale ``gamma_1/gamma_2`` (and relative position tables, if enabled) are not in
        MIRL checkpoints: they stay at their initial values (documented missing keys).
    """
    return convert_mirl_encoder(checkpoint, num_layers, embed_dims, final_norm, layout)[0]


def dropped_keys(checkpoint: Mapping, final_norm: bool = False) -> List[str]:
    """The keys :func:`mirl_to_mmseg` drops (pretraining / classification only)."""
    return sorted(name for name in unwrap_checkpoint(checkpoint)
                  if _pretraining_only(name, final_norm) is not None)


def detect_mirl_encoder(state_dict: Mapping[str, Tensor]) -> Optional[str]:
    """Evidence that ``state_dict`` is a MIRL / MAE-layout ViT encoder, or None."""
    needed = ('cls_token', 'patch_embed.proj.weight', 'blocks.0.attn.qkv.weight')
    if not all(name in state_dict for name in needed):
        return None
    depth, width = checkpoint_architecture(state_dict)
    layout = 'Paddle [in, out]' if _is_paddle_layout(state_dict, width) else 'torch [out, in]'
    extras = sorted({re.sub(r'\d+', '<k>', name.split('.')[0]) for name in state_dict
                     if PRETRAINING_ONLY.match(name)})
    return (f'found cls_token, patch_embed.proj.* and blocks.<i>.* ({depth} blocks of width '
            f'{width}, {layout} Linear weights)'
            + (f' plus {", ".join(extras)} (dropped)' if extras else ''))


@register_checkpoint_source(
    'mirl',
    expects='a MIRL / MAE-layout ViT encoder: the official Paddle pretraining checkpoint '
            '(.pdparams; cls_token, pos_embed, patch_embed.proj.*, blocks.<i>.*, norm_low, '
            'norm0.., decoder_*), a PyTorch MAE-layout export or an mmdynup MIRLPretrainer '
            'checkpoint; written as mmseg MAE / MIRLViT backbone keys',
    detect=detect_mirl_encoder,
    options=('num_layers', 'embed_dims', 'final_norm', 'layout'))
def convert_mirl_checkpoint(state_dict: Mapping[str, Tensor], num_layers: Optional[int] = None,
                            embed_dims: Optional[int] = None, final_norm: bool = False,
                            layout: Optional[str] = None):
    """Checkpoint source ``'mirl'`` of ``tools/convert_checkpoint.py``: see
    :func:`mirl_to_mmseg`; returns the state dict and its :class:`ConversionReport`."""
    converted, sources, dropped, layout = convert_mirl_encoder(
        state_dict, num_layers, embed_dims, final_norm, layout)
    notes = ({name: 'transposed ([in, out] -> [out, in])' for name, source in sources.items()
              if is_paddle_linear_weight(source, converted[name])} if layout == 'paddle' else {})
    return converted, ConversionReport.from_renames(
        sources, dropped, notes,
        remarks=[f'layout: {layout}; load into MIRLViT (or mmseg MAE) with init_cfg='
                 f'Pretrained: missing keys are the layer-scale gamma_1/gamma_2 only (none with '
                 f'layer_scale=False, as in MIRLClassifier)'])


# --------------------------------------------------------------------------- classifier
#: Tensors of a fine-tuned checkpoint (source (c)) that the classifier keeps under its own name.
CLASSIFIER_HEAD = ('fc_norm.', 'head.')


def mirl_to_classifier(checkpoint: Mapping, num_layers: Optional[int] = None,
                       embed_dims: Optional[int] = None, layout: Optional[str] = None):
    """Any MIRL checkpoint -> the state dict of :class:`~mmdynup.classification.MIRLClassifier`,
    with its accounting: returns ``(state_dict, sources, dropped, layout)``.

    The encoder becomes ``backbone.<mmseg MAE keys>`` (:func:`mirl_to_mmseg`; the final
    ``norm``, which global pooling replaces by ``fc_norm``, is dropped with the pretraining-only
    tensors). A fine-tuned checkpoint's ``fc_norm.*`` and ``head.*`` (Paddle ``head.weight``
    transposed) are kept; a pretraining checkpoint has none, and the classifier's stay at their
    initialisation (load with ``strict=False``, as the authors' ``main_finetune.py`` does).
    """
    converted, sources, dropped, layout = convert_mirl_encoder(
        checkpoint, num_layers, embed_dims, final_norm=False, layout=layout)
    state = OrderedDict(('backbone.' + name, tensor) for name, tensor in converted.items())
    sources = {'backbone.' + name: source for name, source in sources.items()}
    tensors = unwrap_checkpoint(checkpoint)
    for name in [name for name in dropped if name.startswith(CLASSIFIER_HEAD)]:
        tensor = tensors[name]
        if layout == 'paddle' and is_paddle_linear_weight(name, tensor):
            tensor = tensor.t().contiguous()
        state[name], sources[name] = tensor, name
        del dropped[name]
    return state, sources, dropped, layout


@register_checkpoint_source(
    'mirl-classifier',
    expects='a MIRL / MAE-layout ViT checkpoint (official Paddle pretraining or fine-tuned '
            '.pdparams with fc_norm.* / head.*, a PyTorch MAE-layout export or an mmdynup '
            'MIRLPretrainer checkpoint); written as mmdynup MIRLClassifier keys (backbone.*, '
            'fc_norm.*, head.*)',
    options=('num_layers', 'embed_dims', 'layout'))
def convert_mirl_classifier_checkpoint(state_dict: Mapping[str, Tensor],
                                       num_layers: Optional[int] = None,
                                       embed_dims: Optional[int] = None,
                                       layout: Optional[str] = None):
    """Checkpoint source ``'mirl-classifier'`` of ``tools/convert_checkpoint.py``: see
    :func:`mirl_to_classifier`; returns the state dict and its :class:`ConversionReport`."""
    converted, sources, dropped, layout = mirl_to_classifier(state_dict, num_layers, embed_dims,
                                                             layout)
    head = [name for name in converted if name.startswith(CLASSIFIER_HEAD)]
    notes = ({name: 'transposed ([in, out] -> [out, in])' for name, source in sources.items()
              if is_paddle_linear_weight(source, converted[name])} if layout == 'paddle' else {})
    return converted, ConversionReport.from_renames(
        sources, dropped, notes,
        remarks=[f'layout: {layout}; '
                 + ('fc_norm / head from the checkpoint' if head else
                    'no fc_norm / head in the checkpoint: they keep their initialisation '
                    '(fine-tuning); missing keys when loading are fc_norm.* and head.* only')])
