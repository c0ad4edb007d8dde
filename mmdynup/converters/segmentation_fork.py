"""The authors' segmentation fork (tiny-smart/segmentation-with-upsamplers, an mmseg 1.1 fork) ->
:class:`mmdynup.seg.UPerHeadWithUpsampler`.

Their head ``UPerHead_Upsample`` (``mmseg/models/decode_heads/uper_head_upsample.py``) is mmseg's
``UPerHead`` plus ``upsample_modules``: one upsampler per top-down step, all used. Layout diff,
fork -> ours::

    psp_modules, bottleneck, lateral_convs,      unchanged (mmseg's UPerHead)
    fpn_convs, fpn_bottleneck, conv_seg
    upsample_modules.N.<key>                     upsamplers.N.<key>

with ``<key>`` renamed inside the upsampler where the layouts differ (``deconv``, ``pixelshuffle``;
the fork's ``upsample_cfg`` itself is translated by :mod:`.fork_upsamplers`). Loading is strict:
keys missing from, or unknown to, the head built from the same kwargs are refused with a list.

Two entry points: ``UPerHead_Upsample`` for :func:`~.official.build_from_official` (a head from
its kwargs and state_dict), and the checkpoint source ``'segmentation-fork'`` for
``tools/convert_checkpoint.py`` (a whole segmentor checkpoint).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from .checkpoint_io import ConversionReport, register_checkpoint_source
from .fork_upsamplers import convert_fork_upsample_cfg, upsample_cfg_from_meta
from .official import OfficialConversion, load_converted, register_official, rename_keys

OFFICIAL = 'UPerHead_Upsample'
FORK_UPSAMPLERS_KEY = 'upsample_modules'
OUR_UPSAMPLERS_KEY = 'upsamplers'
#: The fork's class default (its only ``upsample_cfg`` that needs no config).
FORK_DEFAULT_UPSAMPLE_CFG = dict(type='bilinear', guided=False, align_corners=False)
#: Submodules of mmseg's ``UPerHead`` (and so of the fork's head and ours), plus the fork's own.
HEAD_SUBMODULES = ('psp_modules', 'bottleneck', 'lateral_convs', 'fpn_convs', 'fpn_bottleneck',
                   'conv_seg', FORK_UPSAMPLERS_KEY)


def head_key_renames(top_down_steps: int, upsampler_renames: Sequence[Tuple[str, str]] = (),
                     prefix: str = '') -> List[Tuple[str, str]]:
    """Ordered ``(fork prefix, our prefix)`` renames for :func:`~.official.rename_keys`:
    the upsamplers' inner renames per step first, then ``upsample_modules`` -> ``upsamplers``.

    ``prefix`` is ``'decode_head.'`` for a whole segmentor checkpoint."""
    fork, ours = f'{prefix}{FORK_UPSAMPLERS_KEY}', f'{prefix}{OUR_UPSAMPLERS_KEY}'
    renames = [(f'{fork}.{step}.{old}', f'{ours}.{step}.{new}')
               for step in range(top_down_steps) for old, new in upsampler_renames]
    return renames + [(fork, ours)]


def refuse_mismatched_keys(expected: Mapping[str, Tensor], renamed: Mapping[str, Tensor],
                           official_names: Mapping[str, str],
                           renames: Sequence[Tuple[str, str]]) -> None:
    """Raise ValueError listing, under the fork's names, the keys the head does not have and the
    keys it needs that the state_dict lacks."""
    unexpected = sorted(official_names[key] for key in renamed if key not in expected)
    absent = {key: None for key in expected if key not in renamed}
    missing = sorted(rename_keys(absent, [(ours, fork) for fork, ours in renames])[0])
    if unexpected or missing:
        raise ValueError(f'{OFFICIAL}: the state_dict does not fit the head built from these '
                         f'kwargs: unknown keys {unexpected}, missing keys {missing} (fork '
                         f'names); check that kwargs (in_channels, pool_scales, upsample_cfg) '
                         f'are the checkpoint\'s')


@register_official(OFFICIAL)
def convert_uper_head_upsample(kwargs: dict, state_dict: Mapping[str, Tensor]
                               ) -> OfficialConversion:
    """``UPerHead_Upsample(pool_scales=(1, 2, 3, 6), upsample_cfg=..., **BaseDecodeHead
    kwargs)`` with its state_dict -> a loaded :class:`~mmdynup.seg.UPerHeadWithUpsampler`.

    The head comes back in the state_dict's dtype and in eval mode (the fork's checkpoints are
    evaluated; call ``.train()`` to fine-tune); ``head.forward(inputs)`` (a list of the
    multi-level features) is the fork's ``forward(inputs)``.
    """
    from ..seg import UPerHeadWithUpsampler  # needs mmseg; imported when a conversion runs

    kwargs = dict(kwargs)
    fork_cfg = kwargs.pop('upsample_cfg', FORK_DEFAULT_UPSAMPLE_CFG)
    upsample_cfg, upsampler_renames = convert_fork_upsample_cfg(fork_cfg, OFFICIAL)
    if 'pool_scales' in kwargs:
        kwargs['pool_scales'] = tuple(kwargs['pool_scales'])  # stored as a list in JSON records
    head = UPerHeadWithUpsampler(upsample_cfg=upsample_cfg, **kwargs)
    renames = head_key_renames(len(head.upsamplers), upsampler_renames)
    renamed, official_names = rename_keys(state_dict, renames)
    refuse_mismatched_keys(head.state_dict(), renamed, official_names, renames)
    load_converted(head, renamed, OFFICIAL)
    # The fork's forward takes the list of pyramid levels (B, C_i, H_i, W_i) and returns logits.
    return OfficialConversion(head.eval(), official_names, input_roles={'inputs': 'inputs'},
                              official_call=lambda head, inputs: head(list(inputs['inputs'])))


def detect_segmentation_fork(state_dict: Mapping[str, Tensor]) -> Optional[str]:
    """Evidence that ``state_dict`` is a segmentor with the fork's head (its upsampler keys; the
    fork's bilinear default has none and is mmseg's UPerNet as it is)."""
    count = sum(key.startswith(f'decode_head.{FORK_UPSAMPLERS_KEY}.') for key in state_dict)
    return f'found {count} keys decode_head.{FORK_UPSAMPLERS_KEY}.<i>.*' if count else None


@register_checkpoint_source(
    'segmentation-fork',
    expects='an mmseg segmentor of tiny-smart/segmentation-with-upsamplers (UPerHead_Upsample '
            'decode head: keys decode_head.lateral_convs.*, decode_head.upsample_modules.<i>.*)',
    detect=detect_segmentation_fork, options=('meta', 'upsample_cfg'))
def convert_segmentation_fork(state_dict: Mapping[str, Tensor], meta: Optional[Mapping] = None,
                              upsample_cfg: Optional[Mapping] = None,
                              ) -> Tuple[Dict[str, Tensor], ConversionReport]:
    """A segmentor checkpoint of the fork (UPerNet with ``UPerHead_Upsample``) -> the state_dict
    of the same segmentor with :class:`~mmdynup.seg.UPerHeadWithUpsampler`.

    Args:
        state_dict: the unwrapped segmentor state_dict.
        meta: the checkpoint's mmengine ``meta``; its config text gives the fork's
            ``model.decode_head.upsample_cfg`` when ``upsample_cfg`` is not given.
        upsample_cfg: the fork's ``model.decode_head.upsample_cfg``, e.g.
            ``dict(type='carafe', guided=False)``.

    Backbone and auxiliary-head keys pass unchanged; ``decode_head.upsample_modules.N`` becomes
    ``decode_head.upsamplers.N``. Raises ValueError listing every ``decode_head.*`` key that the
    fork's head does not have.
    """
    if upsample_cfg is None:
        upsample_cfg = upsample_cfg_from_meta(meta, 'decode_head')
    if upsample_cfg is None:
        raise ValueError(f'{OFFICIAL}: the checkpoint stores no config (meta["cfg"]); pass the '
                         f'fork\'s model.decode_head.upsample_cfg, e.g. --option "upsample_cfg='
                         f'{{\'type\': \'carafe\', \'guided\': False}}"')
    ours, upsampler_renames = convert_fork_upsample_cfg(upsample_cfg, OFFICIAL)
    prefix = 'decode_head.'
    unknown = sorted(key for key in state_dict if key.startswith(prefix)
                     and key[len(prefix):].split('.', 1)[0] not in HEAD_SUBMODULES)
    if unknown:
        raise ValueError(f'{OFFICIAL}: {len(unknown)} decode_head key(s) are not part of the '
                         f'fork\'s head ({", ".join(HEAD_SUBMODULES)}): {unknown}; refusing to '
                         f'convert')
    steps = {key.split('.')[2] for key in state_dict if key.startswith(f'{prefix}lateral_convs.')}
    if not steps:
        raise ValueError(f'{OFFICIAL}: no decode_head.lateral_convs.* keys: not a UPerNet '
                         f'segmentor checkpoint')
    converted, official_names = rename_keys(
        state_dict, head_key_renames(len(steps), upsampler_renames, prefix))
    return converted, ConversionReport.from_renames(
        official_names, remarks=[f'fork upsample_cfg {dict(upsample_cfg)} -> ours {ours} (set it '
                                 f'as model.decode_head=dict(type=\'UPerHeadWithUpsampler\', '
                                 f'upsample_cfg=...))'])
