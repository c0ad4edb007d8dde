"""The authors' detection fork (tiny-smart/detection-with-upsamplers, mmdet 3.1 fork) ->
:class:`mmdynup.det.FPNWithUpsampler`.

Their neck ``FPN_UPSAMPLE`` (``mmdet/models/necks/fpn_upsample.py``) is mmdet's ``FPN`` plus
``upsample_modules``: one upsampler per top-down step, and, when ``add_extra_convs`` is set, one
more per extra level that ``forward`` never calls. Layout diff, fork -> ours::

    lateral_convs.*                  lateral_convs.*        (mmdet's, unchanged)
    fpn_convs.*                      fpn_convs.*            (mmdet's, unchanged)
    upsample_modules.N.<key>         upsamplers.N.<key>     N < number of top-down steps
    upsample_modules.N.<key>         dropped, listed        N >= it (spare: never used)

with ``<key>`` renamed inside the upsampler where the layouts differ (``deconv``,
``pixelshuffle``; see :mod:`.fork_upsamplers`). Any other key is refused with the list.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from ..det import FPNWithUpsampler
from .checkpoint_io import ConversionReport, register_checkpoint_source
from .fork_upsamplers import convert_fork_upsample_cfg, upsample_cfg_from_meta
from .official import OfficialConversion, load_converted, register_official, rename_keys

OFFICIAL = 'FPN_UPSAMPLE'
FORK_UPSAMPLERS_KEY = 'upsample_modules'
OUR_UPSAMPLERS_KEY = 'upsamplers'
#: mmdet ``FPN`` submodules whose keys both layouts share.
SHARED_SUBMODULES = ('lateral_convs', 'fpn_convs')
_UPSAMPLER_KEY = re.compile(rf'^{FORK_UPSAMPLERS_KEY}\.(\d+)\.(.+)$')


def convert_neck_keys(state_dict: Mapping[str, Tensor], top_down_steps: int,
                      upsampler_renames: Sequence[Tuple[str, str]] = (), prefix: str = '',
                      ) -> Tuple[Dict[str, Tensor], Dict[str, str], List[str]]:
    """Rename the ``FPN_UPSAMPLE`` keys under ``prefix`` to ours; other keys pass unchanged.

    Args:
        state_dict: a neck state_dict (``prefix=''``) or a whole detector's (``'neck.'``).
        top_down_steps: upsamplers the neck uses (its levels minus one); higher ones are spare.
        upsampler_renames: ``(fork key, our key)`` inside one upsampler.
        prefix: where the neck's keys start.

    Returns:
        ``(converted, official_names, spare_keys)``: our state_dict, our key -> the fork's key,
        and the dropped keys of spare upsamplers.

    Raises:
        ValueError: listing every key under ``prefix`` that is not part of the fork's neck.
    """
    kept, spare, unknown = {}, [], []
    for key, value in state_dict.items():
        local = key[len(prefix):] if key.startswith(prefix) else None
        match = _UPSAMPLER_KEY.match(local) if local is not None else None
        if match and int(match.group(1)) >= top_down_steps:
            spare.append(key)
        elif local is None or match or local.split('.', 1)[0] in SHARED_SUBMODULES:
            kept[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f'{OFFICIAL}: {len(unknown)} key(s) under {prefix or "the neck"!r} are '
                         f'not part of the fork\'s neck ({", ".join(SHARED_SUBMODULES)}, '
                         f'{FORK_UPSAMPLERS_KEY}): {sorted(unknown)}; refusing to convert')
    fork, ours = f'{prefix}{FORK_UPSAMPLERS_KEY}', f'{prefix}{OUR_UPSAMPLERS_KEY}'
    # The upsamplers' inner renames per step first, then upsample_modules -> upsamplers.
    renames = [(f'{fork}.{step}.{old}', f'{ours}.{step}.{new}')
               for step in range(top_down_steps) for old, new in upsampler_renames]
    converted, official_names = rename_keys(kept, renames + [(fork, ours)])
    return converted, official_names, spare


def report_spare(spare: Sequence[str]) -> None:
    """Print the dropped keys (the fork builds one upsampler per extra level, never used)."""
    if spare:
        print(f'{OFFICIAL}: dropped {len(spare)} key(s) of spare upsamplers that forward never '
              f'uses: {list(spare)}')


@register_official(OFFICIAL)
def convert_fpn_upsample(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``FPN_UPSAMPLE(**kwargs)`` with its ``state_dict`` -> loaded :class:`FPNWithUpsampler`.

    ``kwargs`` are the fork's constructor arguments: mmdet ``FPN``'s plus the fork's
    ``upsample_cfg`` (with ``type`` and ``guided``). The neck comes back in the state_dict's
    dtype and in eval mode; ``neck(tuple(inputs))`` is the fork's ``forward(tuple(inputs))``.
    Spare upsamplers' keys are dropped and printed; any other mismatch is refused.
    """
    kwargs = dict(kwargs)
    if 'upsample_cfg' not in kwargs:
        raise ValueError(f'{OFFICIAL}: kwargs have no upsample_cfg; the fork\'s default '
                         f'dict(mode="nearest", guided=False) has no "type" and never built')
    upsample_cfg, renames = convert_fork_upsample_cfg(kwargs.pop('upsample_cfg'), OFFICIAL)
    neck = FPNWithUpsampler(upsample_cfg=upsample_cfg, **kwargs)
    converted, official_names, spare = convert_neck_keys(state_dict, len(neck.upsamplers),
                                                         renames)
    report_spare(spare)
    load_converted(neck, converted, OFFICIAL)
    # Eval mode, as the fork's checkpoints are evaluated (only norm layers would differ).
    # The fork's forward takes the tuple of backbone levels and returns the tuple of outputs.
    return OfficialConversion(neck.eval(), official_names, input_roles={'inputs': 'inputs'},
                              official_call=lambda neck, inputs: neck(tuple(inputs['inputs'])))


def detect_detection_fork(state_dict: Mapping[str, Tensor]) -> Optional[str]:
    """Evidence that ``state_dict`` is a detector with the fork's neck (its upsampler keys; no
    3x3 extra lateral, which marks mmdet's ``FPN_CARAFE``: source ``mmdet-carafe``)."""
    from .mmdet_carafe import detect_mmdet_carafe
    if detect_mmdet_carafe(state_dict):
        return None
    count = sum(key.startswith(f'neck.{FORK_UPSAMPLERS_KEY}.') for key in state_dict)
    return f'found {count} keys neck.{FORK_UPSAMPLERS_KEY}.<i>.*' if count else None


@register_checkpoint_source(
    'detection-fork',
    expects='an mmdet detector of tiny-smart/detection-with-upsamplers (FPN_UPSAMPLE neck: keys '
            'neck.lateral_convs.*, neck.fpn_convs.*, neck.upsample_modules.<i>.*)',
    detect=detect_detection_fork, options=('meta', 'upsample_cfg'))
def convert_detection_fork(state_dict: Mapping[str, Tensor], meta: Optional[Mapping] = None,
                           upsample_cfg: Optional[Mapping] = None,
                           ) -> Tuple[Dict[str, Tensor], ConversionReport]:
    """A detector checkpoint of the fork (Faster / Mask R-CNN, Panoptic FPN with
    ``FPN_UPSAMPLE``) -> the state_dict of the same detector with :class:`FPNWithUpsampler`.

    Args:
        state_dict: the unwrapped detector state_dict.
        meta: the checkpoint's mmengine ``meta``; its config text gives the fork's
            ``model.neck.upsample_cfg`` when ``upsample_cfg`` is not given.
        upsample_cfg: the fork's ``model.neck.upsample_cfg``, e.g. ``dict(type='dysample',
            guided=False, style='lp', groups=4, dyscope=True)``.

    Backbone and head keys pass unchanged; neck keys are converted as in
    :func:`convert_neck_keys`, the spare upsamplers' keys dropped (listed in the report).
    """
    if upsample_cfg is None:
        upsample_cfg = upsample_cfg_from_meta(meta, 'neck')
    if upsample_cfg is None:
        raise ValueError(f'{OFFICIAL}: the checkpoint stores no config (meta["cfg"]); pass the '
                         f'fork\'s model.neck.upsample_cfg, e.g. --option "upsample_cfg='
                         f'{{\'type\': \'dysample\', \'guided\': False, \'dyscope\': True}}"')
    ours, renames = convert_fork_upsample_cfg(upsample_cfg, OFFICIAL)
    levels = {key.split('.')[2] for key in state_dict if key.startswith('neck.lateral_convs.')}
    if not levels:
        raise ValueError(f'{OFFICIAL}: no neck.lateral_convs.* keys: not a detector checkpoint '
                         f'with an FPN neck')
    converted, official_names, spare = convert_neck_keys(state_dict, len(levels) - 1, renames,
                                                         prefix='neck.')
    reason = 'spare upsampler: FPN_UPSAMPLE builds one per extra level, forward never uses it'
    return converted, ConversionReport.from_renames(
        official_names, dropped={key: reason for key in spare},
        remarks=[f'fork upsample_cfg {dict(upsample_cfg)} -> ours {ours} (set it as '
                 f'model.neck=dict(type=\'FPNWithUpsampler\', upsample_cfg=...))'])
