"""The authors' SegFormer head (poppinace/fade ``segformer/segformer_head.py``, an NVlabs SegFormer
head on mmseg 0.11) and their SegFormer checkpoints ->
:class:`mmdynup.seg.SegformerHeadWithUpsampler` (``head_form='authors'``), with NVlabs' MiT backbone -> mmseg's ``MixVisionTransformer``.

Head layout diff, authors -> ours (Linear weights (E, C_k) become 1x1 conv weights (E, C_k, 1, 1);
the authors' own ``conv_seg`` is never used by their forward and is dropped)::

    linear_c{k}.proj              convs.{k-1}
    linear_fuse.{conv, bn}        fusion_conv.{conv, bn}
    linear_pred                   conv_seg
    upsamplers.N.<FADE_L2H keys>  pyramid_upsampler.upsamplers.N.<same keys>

Backbone layout diff, NVlabs ``mix_transformer.py`` -> mmseg ``mit.py`` (stage i = 1..4; block
``b`` = ``block{i}.{j}`` -> ``layers.{i-1}.1.{j}``; fc1 / fc2 weights become 1x1 convs)::

    patch_embed{i}.proj / .norm   layers.{i-1}.0.projection / .norm
    b.norm1 / b.norm2             norm1 / norm2
    b.attn.q + b.attn.kv          attn.attn.in_proj_{weight, bias} (rows [q; kv])
    b.attn.proj                   attn.attn.out_proj
    b.attn.sr / b.attn.norm       attn.sr / attn.norm
    b.mlp.fc1 / .dwconv.dwconv / .fc2   ffn.layers.0 / 1 / 4
    norm{i}                       layers.{i-1}.2
    head                          dropped (MiT's ImageNet classifier; no segmentor uses it)

Only the published head revision loads: the FADE log behind the 44.41 row was written by an
earlier revision (``FadeUp`` with ``selector``, ``FuseGeneral`` with ``conv1_g`` / ``conv1_x``),
whose keys are refused with that reason.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .checkpoint_io import ConversionReport, register_checkpoint_source, value_change
from .official import OfficialConversion, convert_official, load_converted, register_official, \
    rename_keys

OFFICIAL = 'SegFormerHead'
#: The authors' ``upsample_cfg['upsample_mode']`` -> (our upsampler type, the FADE_L2H class).
AUTHORS_UPSAMPLE_MODES: Dict[str, Tuple[Optional[str], Optional[str]]] = {
    'bilinear': (None, None),
    'fade': ('FADE', 'FADE_L2H.FADE'),
    'fade_lite': ('FADELite', 'FADE_L2H.FADELite'),
    'semishift': ('SemiShiftUp', 'FADE_L2H.SemiShiftUp'),
}
#: ``BaseDecodeHead`` arguments passed on unchanged (the others are read below or refused).
PASSED_ON = ('in_index', 'dropout_ratio', 'num_classes', 'norm_cfg', 'align_corners',
             'ignore_index', 'loss_decode', 'sampler', 'conv_cfg', 'act_cfg')
#: Modules of the authors' head (``conv_seg`` is built by NVlabs' BaseDecodeHead, never used).
HEAD_SUBMODULES = ('linear_c1', 'linear_c2', 'linear_c3', 'linear_c4', 'linear_fuse',
                   'linear_pred', 'upsamplers', 'conv_seg')
#: Names of the earlier head revision (the 44.41 training log), refused.
EARLIER_REVISION = re.compile(r'\.(selector|conv1_g|conv1_x)\.|^(selector|conv1_g|conv1_x)\.')


def head_renames(num_stages: int, prefix: str = '') -> List[Tuple[str, str]]:
    """Ordered ``(authors' prefix, our prefix)`` renames of the head (``prefix='decode_head.'``
    for a whole segmentor)."""
    renames = [(f'{prefix}linear_c{k}.proj', f'{prefix}convs.{k - 1}')
               for k in range(1, num_stages + 1)]
    return renames + [(f'{prefix}linear_fuse', f'{prefix}fusion_conv'),
                      (f'{prefix}linear_pred', f'{prefix}conv_seg'),
                      (f'{prefix}upsamplers', f'{prefix}pyramid_upsampler.upsamplers')]


def as_conv1x1(state_dict: Mapping[str, Tensor], keys) -> Dict[str, Tensor]:
    """``Linear`` weights (out, in) under ``keys`` as 1x1 conv weights (out, in, 1, 1)."""
    return {key: value[:, :, None, None] if key in keys and value.dim() == 2 else value
            for key, value in state_dict.items()}


def refuse_earlier_revision(state_dict: Mapping[str, Tensor]) -> None:
    earlier = sorted(key for key in state_dict if EARLIER_REVISION.search(key))
    if earlier:
        raise ValueError(
            f'{OFFICIAL}: keys {earlier[:4]} come from the head revision before poppinace/fade\'s '
            f'published one (FadeUp selector / FuseGeneral conv1_g, conv1_x, as printed in the '
            f'FADE 44.41 training log); only the published layout (upsamplers.N.gate_generator, '
            f'.ker_generator.*) converts')


def our_head_arguments(kwargs: Mapping) -> dict:
    """The authors' ``SegFormerHead`` kwargs -> ``SegformerHeadWithUpsampler`` kwargs."""
    kwargs = dict(kwargs)
    for required in ('in_channels', 'feature_strides', 'decoder_params', 'upsample_cfg'):
        if required not in kwargs:
            raise ValueError(f'{OFFICIAL}: kwargs has no {required!r}; the authors\' head '
                             f'requires it (got {sorted(kwargs)})')
    in_channels, strides = list(kwargs.pop('in_channels')), list(kwargs.pop('feature_strides'))
    if len(strides) != len(in_channels) or min(strides) != strides[0]:
        raise ValueError(f'{OFFICIAL}: feature_strides={strides} must have one entry per stage '
                         f'of in_channels={in_channels}, the finest first (the head asserts it)')
    decoder_params = kwargs.pop('decoder_params')
    if not isinstance(decoder_params, Mapping) or 'embed_dim' not in decoder_params:
        raise ValueError(f'{OFFICIAL}: decoder_params={decoder_params!r} needs embed_dim, the '
                         f'decoder width')
    upsample_cfg = dict(kwargs.pop('upsample_cfg'))
    mode, guided = upsample_cfg.pop('upsample_mode', None), upsample_cfg.pop('is_guided', None)
    if mode not in AUTHORS_UPSAMPLE_MODES or guided is None or upsample_cfg:
        raise ValueError(f'{OFFICIAL}: upsample_cfg needs upsample_mode (one of '
                         f'{sorted(AUTHORS_UPSAMPLE_MODES)}) and is_guided and nothing else; '
                         f'got mode={mode!r}, is_guided={guided!r}, other keys '
                         f'{sorted(upsample_cfg)}')
    our_type = AUTHORS_UPSAMPLE_MODES[mode][0]
    if our_type is not None and not guided:
        raise ValueError(f'{OFFICIAL}: upsample_mode={mode!r} with is_guided=False calls '
                         f'up(x), which FADE_L2H\'s classes do not accept; the authors\' head '
                         f'only runs it with is_guided=True')
    kwargs.pop('channels', None)  # the authors' BaseDecodeHead width: sizes only conv_seg
    kwargs.pop('input_transform', None)  # 'multiple_select', set by the head itself
    unknown = sorted(set(kwargs) - set(PASSED_ON))
    if unknown:
        raise ValueError(f'{OFFICIAL}: kwargs {unknown} are not arguments of the authors\' head')
    return dict(kwargs, in_channels=in_channels, channels=int(decoder_params['embed_dim']),
                head_form='authors',
                upsample_cfg=None if our_type is None else dict(type=our_type))


@register_official(OFFICIAL)
def convert_segformer_head(kwargs: dict, state_dict: Mapping[str, Tensor]
                           ) -> OfficialConversion:
    """The authors' ``SegFormerHead(**kwargs)`` with its state_dict -> a loaded
    ``SegformerHeadWithUpsampler(head_form='authors')`` in eval mode and the state_dict's dtype;
    ``official_forward(inputs=[c1, c2, c3, c4])`` is the authors' ``head.forward(inputs)``."""
    from ..seg import SegformerHeadWithUpsampler  # needs mmseg; imported when a conversion runs

    refuse_earlier_revision(state_dict)
    head = SegformerHeadWithUpsampler(**our_head_arguments(kwargs))
    # NVlabs' BaseDecodeHead builds conv_seg at width `channels`; the head never calls it.
    used = {key: value for key, value in state_dict.items() if not key.startswith('conv_seg.')}
    renamed, official_names = rename_keys(used, head_renames(len(head.in_channels)))
    load_converted(head, as_conv1x1(renamed, {f'convs.{k}.weight' for k in range(4)}), OFFICIAL)
    return OfficialConversion(head.eval(), official_names, input_roles={'inputs': 'inputs'},
                              official_call=lambda head, inputs: head(list(inputs['inputs'])))


# --------------------------------------------------------------------------- whole checkpoints
def mit_backbone_renames(keys) -> Tuple[Dict[str, str], Dict[str, Tuple[str, str]], Dict[str, str]]:
    """NVlabs' MiT keys (without ``backbone.``) -> mmseg's.

    Returns ``(renames, merged, dropped)``: one-to-one renames ``source -> ours``; the attention
    inputs ``ours in_proj_{weight,bias} -> (q key, kv key)``; and ``source -> reason`` for the
    keys that have no counterpart. Raises ValueError naming keys that are not NVlabs' MiT.
    """
    renames, merged, dropped, unknown = {}, {}, {}, []
    for key in keys:
        match = re.fullmatch(r'(patch_embed|block|norm)(\d)\.(.+)', key)
        if key.startswith('head.'):
            dropped[key] = 'MiT\'s ImageNet classifier; the segmentor has none'
            continue
        if match is None:
            unknown.append(key)
            continue
        part, stage, rest = match.group(1), int(match.group(2)) - 1, match.group(3)
        if part == 'patch_embed':
            renames[key] = f'layers.{stage}.0.' + re.sub(r'^proj\.', 'projection.', rest)
        elif part == 'norm':
            renames[key] = f'layers.{stage}.2.{rest}'
        else:
            block = re.fullmatch(r'(\d+)\.(norm1|norm2|attn\.\w+|mlp\.fc1|mlp\.fc2|'
                                 r'mlp\.dwconv\.dwconv)\.(weight|bias)', rest)
            if block is None:
                unknown.append(key)
                continue
            index, module, tensor = block.groups()
            ours = f'layers.{stage}.1.{index}.'
            inner = {'attn.proj': 'attn.attn.out_proj', 'mlp.fc1': 'ffn.layers.0',
                     'mlp.dwconv.dwconv': 'ffn.layers.1', 'mlp.fc2': 'ffn.layers.4'}
            if module == 'attn.q':
                merged[f'{ours}attn.attn.in_proj_{tensor}'] = (key, key.replace('attn.q.',
                                                                                'attn.kv.'))
            elif module == 'attn.kv':
                dropped[key] = (f'concatenated after {key.replace("attn.kv.", "attn.q.")} into '
                                f'{ours}attn.attn.in_proj_{tensor}')
            elif module in ('norm1', 'norm2', 'attn.sr', 'attn.norm') or module in inner:
                renames[key] = f'{ours}{inner.get(module, module)}.{tensor}'
            else:
                unknown.append(key)
    if unknown:
        raise ValueError(f'backbone keys {sorted(unknown)[:6]} are not NVlabs MiT '
                         f'(patch_embed<i>, block<i>, norm<i>, head)')
    return renames, merged, dropped


def infer_upsampler_official(state_dict: Mapping[str, Tensor], prefix: str) -> Optional[str]:
    """The FADE_L2H class of the head's upsamplers from their keys, None for bilinear."""
    keys = [key[len(prefix):] for key in state_dict if key.startswith(prefix)]
    if not keys:
        return None
    encoder = state_dict.get(f'{prefix}0.ker_generator.content_encoder.weight')
    if encoder is None:
        raise ValueError(f'{prefix}0.* has no ker_generator.content_encoder: not a FADE_L2H '
                         f'upsampler (keys {sorted(keys)[:4]})')
    if not any(key.startswith('0.gate_generator.') for key in keys):
        return 'FADE_L2H.SemiShiftUp'
    return 'FADE_L2H.FADELite' if encoder.shape[1] == 1 else 'FADE_L2H.FADE'


def detect_segformer_authors(state_dict: Mapping[str, Tensor]) -> Optional[str]:
    found = [key for key in ('decode_head.linear_c1.proj.weight',
                             'decode_head.linear_fuse.conv.weight',
                             'decode_head.linear_pred.weight') if key in state_dict]
    return f'found {", ".join(found)}' if len(found) == 3 else None


@register_checkpoint_source(
    'segformer-authors',
    expects='an NVlabs-style SegFormer of poppinace/fade (keys backbone.patch_embed<i>.*, '
            'backbone.block<i>.*, decode_head.linear_c<k>.proj.*, decode_head.linear_fuse.*, '
            'decode_head.linear_pred.*, optional decode_head.upsamplers.<n>.*)',
    detect=detect_segformer_authors)
def convert_segformer_authors(state_dict: Mapping[str, Tensor]
                              ) -> Tuple[Dict[str, Tensor], ConversionReport]:
    """A SegFormer segmentor checkpoint of the authors -> mmseg ``EncoderDecoder`` with
    ``MixVisionTransformer`` and ``SegformerHeadWithUpsampler(head_form='authors')``.

    Every upsampler goes through its FADE_L2H operator converter (class inferred from its keys);
    every key is converted or listed as dropped with its reason; anything else is refused.
    """
    refuse_earlier_revision(state_dict)
    unknown = sorted(key for key in state_dict if not key.startswith(('backbone.', 'decode_head.'))
                     or key.startswith('decode_head.')
                     and key.split('.')[1] not in HEAD_SUBMODULES)
    if unknown:
        raise ValueError(f'keys {unknown[:6]} belong to neither NVlabs\' MiT backbone nor the '
                         f'authors\' head ({", ".join(HEAD_SUBMODULES)})')
    converted: Dict[str, Tensor] = {}
    sources: Dict[str, Optional[str]] = {}
    notes: Dict[str, str] = {}
    dropped: Dict[str, str] = {}

    backbone = [key[len('backbone.'):] for key in state_dict if key.startswith('backbone.')]
    renames, merged, backbone_dropped = mit_backbone_renames(backbone)
    for source, ours in renames.items():
        value = state_dict[f'backbone.{source}']
        if re.search(r'ffn\.layers\.[04]\.weight$', ours):
            value = value[:, :, None, None]  # NVlabs' fc1 / fc2 Linear -> mmseg's 1x1 Conv2d
        converted[f'backbone.{ours}'], sources[f'backbone.{ours}'] = value, f'backbone.{source}'
    for ours, (query, key_value) in merged.items():
        converted[f'backbone.{ours}'] = torch.cat([state_dict[f'backbone.{query}'],
                                                   state_dict[f'backbone.{key_value}']])
        sources[f'backbone.{ours}'] = f'backbone.{query}'
        notes[f'backbone.{ours}'] = f'[q; kv]: concatenated with backbone.{key_value}'
    dropped.update({f'backbone.{key}': reason for key, reason in backbone_dropped.items()})

    head = {key: value for key, value in state_dict.items() if key.startswith('decode_head.')}
    dropped.update({key: 'NVlabs\' BaseDecodeHead conv_seg, never used by the authors\' head'
                    for key in head if key.startswith('decode_head.conv_seg.')})
    prefix = 'decode_head.upsamplers.'
    official = infer_upsampler_official(head, prefix)
    plain = {key: value for key, value in head.items()
             if not key.startswith((prefix, 'decode_head.conv_seg.'))}
    stages = len({key.split('.')[1] for key in plain if key.startswith('decode_head.linear_c')})
    renamed, names = rename_keys(plain, head_renames(stages, 'decode_head.'))
    projections = {f'decode_head.convs.{k}.weight' for k in range(stages)}
    converted.update(as_conv1x1(renamed, projections))
    sources.update(names)
    remark = 'upsample_cfg=None (bilinear: NVlabs\' stock head)'
    if official is not None:
        steps = sorted({int(key[len(prefix):].split('.')[0]) for key in head
                        if key.startswith(prefix)})
        for step in steps:
            operator = {key[len(f'{prefix}{step}.'):]: value for key, value in head.items()
                        if key.startswith(f'{prefix}{step}.')}
            width = operator['ker_generator.compressor_de.weight'].shape[1]
            conversion = convert_official(official, dict(in_channels_en=width), operator)
            for ours, value in conversion.module.state_dict().items():
                key = f'decode_head.pyramid_upsampler.upsamplers.{step}.{ours}'
                converted[key] = operator[conversion.official_names[ours]].clone()
                sources[key] = f'{prefix}{step}.{conversion.official_names[ours]}'
        remark = (f'{len(steps)} upsamplers of {official}: set model.decode_head=dict('
                  f'type=\'SegformerHeadWithUpsampler\', head_form=\'authors\', upsample_cfg='
                  f'dict(type={type(conversion.module).__name__!r}))')
    for key, source in sources.items():
        note = value_change(state_dict[source], converted[key]) if key not in notes else None
        if note:
            notes[key] = note
    return converted, ConversionReport.from_renames(sources, dropped, notes, remarks=[remark])
