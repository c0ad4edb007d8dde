"""mmdet's CARAFE models (``FPN_CARAFE`` neck, ``FCNMaskHead`` with a CARAFE upsample) ->
:class:`mmdynup.det.FPNCARAFEWithUpsampler` and :class:`mmdynup.det.FCNMaskHeadWithUpsampler`.

mmdet's released CARAFE detectors (``configs/carafe/``: Faster R-CNN R50 38.6 box AP, Mask R-CNN
R50 39.3 / 35.6) hold mmcv ``CARAFEPack`` modules, whose parameter names ours share. Layout diff,
mmdet -> ours::

    neck.lateral_convs.*                    neck.lateral_convs.*        (unchanged)
    neck.fpn_convs.*                        neck.fpn_convs.*            (unchanged)
    neck.upsample_modules.N.<key>           neck.upsamplers.N.<key>     (deconv: weight ->
                                                                         deconv.weight)
    roi_head.mask_head.upsample.<key>       roi_head.mask_head.upsample.<key>   (unchanged)

Every other key passes unchanged; a neck key outside these submodules is refused with the list.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Optional, Tuple

from torch import Tensor

from ..det import FPNCARAFEWithUpsampler
from .checkpoint_io import ConversionReport, register_checkpoint_source
from .official import OfficialConversion, load_converted, register_official, rename_keys

OFFICIAL = 'FPN_CARAFE'
MMDET_UPSAMPLERS_KEY = 'upsample_modules'
OUR_UPSAMPLERS_KEY = 'upsamplers'
NECK_SUBMODULES = ('lateral_convs', 'fpn_convs', MMDET_UPSAMPLERS_KEY)
#: Key renames inside one upsampler, by mmcv name (CARAFEPack, PixelShufflePack coincide).
UPSAMPLER_RENAMES = {'deconv': (('weight', 'deconv.weight'), ('bias', 'deconv.bias'))}
_EXTRA_LATERAL = re.compile(r'^neck\.lateral_convs\.(\d+)\.conv\.weight$')


def convert_fpn_carafe_keys(state_dict: Mapping[str, Tensor], upsample_type: str,
                            prefix: str = '') -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Rename ``FPN_CARAFE``'s keys under ``prefix`` to ours; keys outside ``prefix`` pass.

    Args:
        state_dict: a neck state_dict (``prefix=''``) or a whole detector's (``'neck.'``).
        upsample_type: the mmcv ``upsample_cfg.type`` the neck was built with (``'carafe'``).
        prefix: where the neck's keys start.

    Returns:
        ``(converted, official_names)``: our state_dict and our key -> mmdet's key.
    """
    unknown = sorted(key for key in state_dict if key.startswith(prefix)
                     and key[len(prefix):].split('.', 1)[0] not in NECK_SUBMODULES)
    if unknown:
        raise ValueError(f'{OFFICIAL}: {len(unknown)} key(s) under {prefix or "the neck"!r} are '
                         f'not part of FPN_CARAFE ({", ".join(NECK_SUBMODULES)}): {unknown}')
    steps = sorted({int(key[len(prefix):].split('.')[1]) for key in state_dict
                    if key.startswith(f'{prefix}{MMDET_UPSAMPLERS_KEY}.')})
    mmdet, ours = f'{prefix}{MMDET_UPSAMPLERS_KEY}', f'{prefix}{OUR_UPSAMPLERS_KEY}'
    renames = [(f'{mmdet}.{step}.{old}', f'{ours}.{step}.{new}')
               for step in steps for old, new in UPSAMPLER_RENAMES.get(upsample_type, ())]
    return rename_keys(state_dict, renames + [(mmdet, ours)])


def _upsample_type(upsample_cfg: Optional[Mapping]) -> str:
    return (upsample_cfg or {}).get('type', 'carafe')


@register_official(OFFICIAL)
def convert_fpn_carafe(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``FPN_CARAFE(**kwargs)`` with its ``state_dict`` -> loaded :class:`FPNCARAFEWithUpsampler`.

    ``kwargs`` are mmdet's constructor arguments (``upsample_cfg`` in mmcv's form is read as is).
    The neck comes back in the state_dict's dtype and in eval mode; ``official_forward(inputs=
    [C2, ..., C5])`` is ``FPN_CARAFE.forward(inputs)``, the tuple of ``num_outs`` maps.
    """
    kwargs = dict(kwargs)
    if 'order' in kwargs:
        kwargs['order'] = tuple(kwargs['order'])  # stored as a list in JSON-like records
    neck = FPNCARAFEWithUpsampler(**kwargs)
    converted, official_names = convert_fpn_carafe_keys(
        state_dict, _upsample_type(kwargs.get('upsample_cfg')))
    load_converted(neck, converted, OFFICIAL)
    return OfficialConversion(neck.eval(), official_names, input_roles={'inputs': 'inputs'},
                              official_call=lambda neck, inputs: neck(tuple(inputs['inputs'])))


def detect_mmdet_carafe(state_dict: Mapping[str, Tensor]) -> Optional[str]:
    """Evidence of ``FPN_CARAFE``: upsampler keys and an extra lateral that is a 3x3 conv (the
    authors' ``FPN_UPSAMPLE`` has 1x1 laterals only)."""
    extra = [key for key in state_dict if _EXTRA_LATERAL.match(key)
             and state_dict[key].dim() == 4 and state_dict[key].shape[-1] > 1]
    count = sum(key.startswith(f'neck.{MMDET_UPSAMPLERS_KEY}.') for key in state_dict)
    if not (extra and count):
        return None
    return (f'found {count} keys neck.{MMDET_UPSAMPLERS_KEY}.<i>.* and the 3x3 extra lateral '
            f'{extra[0]}')


@register_checkpoint_source(
    'mmdet-carafe',
    expects='an mmdet detector with FPN_CARAFE (keys neck.lateral_convs.* incl. a 3x3 extra '
            'lateral, neck.fpn_convs.*, neck.upsample_modules.<i>.*), e.g. mmdet\'s released '
            'faster_rcnn_r50_fpn_carafe_1x_coco / mask_rcnn_r50_fpn_carafe_1x_coco',
    detect=detect_mmdet_carafe, options=('upsample_type',))
def convert_mmdet_carafe(state_dict: Mapping[str, Tensor], upsample_type: str = 'carafe',
                         ) -> Tuple[Dict[str, Tensor], ConversionReport]:
    """An mmdet CARAFE detector -> the same detector with :class:`FPNCARAFEWithUpsampler`
    (``neck.upsample_modules`` -> ``neck.upsamplers``); the mask head's ``upsample`` (mmcv
    ``CARAFEPack``) keeps its keys in :class:`FCNMaskHeadWithUpsampler`.

    Args:
        state_dict: the unwrapped detector state_dict.
        upsample_type: the neck's mmcv ``upsample_cfg.type`` (``'carafe'`` in mmdet's configs).
    """
    converted, official_names = convert_fpn_carafe_keys(state_dict, upsample_type,
                                                        prefix='neck.')
    mask_upsample = [key for key in state_dict if key.startswith('roi_head.mask_head.upsample.')]
    remarks = [f'neck: FPN_CARAFE -> model.neck=dict(type=\'FPNCARAFEWithUpsampler\', '
               f'upsample_cfg=... as in mmdet\'s config)']
    if mask_upsample:
        remarks.append('mask head: roi_head.mask_head.upsample.* unchanged -> '
                       'model.roi_head.mask_head=dict(type=\'FCNMaskHeadWithUpsampler\')')
    return converted, ConversionReport.from_renames(official_names, remarks=remarks)


__all__ = ['convert_fpn_carafe', 'convert_fpn_carafe_keys', 'convert_mmdet_carafe',
           'detect_mmdet_carafe']
