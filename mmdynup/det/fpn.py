"""mmdet's ``FPN`` with any mmdynup upsampler in its top-down path.

The feature pyramid (Lin et al., CVPR 2017) merges each level with the upsampled coarser one:

    lateral[i - 1] <- lateral[i - 1] + up(lateral[i])                      (unguided)
    lateral[i - 1] <- lateral[i - 1] + up(lateral[i], guide=lateral[i - 1])  (guided)

mmdet's ``FPN`` hard-codes ``up`` as ``F.interpolate``; the upsampler papers (CARAFE, ICCV 2019;
FADE, ECCV 2022; SAPA, NeurIPS 2022; DySample, ICCV 2023) replace it with their operator at the
neck's ``out_channels``, guided operators reading the finer lateral as it is *before* the
addition (the 1x1 lateral conv output), as in the authors' detection fork
(tiny-smart/detection-with-upsamplers, ``FPN_UPSAMPLE``). :class:`FPNWithUpsampler` subclasses
mmdet's ``FPN``: its constructor builds every conv, and only ``forward`` and ``init_weights``
change.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from mmdet.models.necks import FPN
from mmdet.registry import MODELS
from torch import Tensor, nn

# The config checks and the guided call are shared with the mmseg heads.
from ..upsamplers.baselines import INTERPOLATE_ARGUMENTS
from ..upsamplers.host_config import build_head_upsampler

#: ``upsampler_init`` choices (see :class:`FPNWithUpsampler`).
UPSAMPLER_INITS = ('neck', 'own')
EXTRA_CONV_SOURCES = ('on_input', 'on_lateral', 'on_output')


def upsampler_config(upsample_cfg: Optional[Mapping], owner: str = 'FPNWithUpsampler') -> dict:
    """A neck's ``upsample_cfg`` as an upsampler config; ``None`` is mmdet's default (nearest).

    mmdet's own ``FPN`` form, ``F.interpolate`` arguments without ``type``
    (``dict(mode='bilinear', align_corners=True)``, ``dict(scale_factor=2)``), is taken as it is
    (:class:`~mmdynup.upsamplers.baselines.InterpolateUpsample`, equal to mmdet's ``FPN``). The
    merged form, a base config's ``mode`` beside our ``type``, is refused with the fix.
    """
    if upsample_cfg is None:
        return dict(type='NearestUpsample')
    if not isinstance(upsample_cfg, Mapping):
        raise TypeError(f'{owner}: upsample_cfg must be a dict such as '
                        f'dict(type="DySample"), or None for nearest; got '
                        f'{upsample_cfg!r} ({type(upsample_cfg).__name__})')
    if 'type' not in upsample_cfg:
        unknown = sorted(set(upsample_cfg) - set(INTERPOLATE_ARGUMENTS))
        if unknown:
            raise KeyError(f'{owner}: upsample_cfg={dict(upsample_cfg)!r} has no "type" and '
                           f'{unknown} are not F.interpolate arguments {INTERPOLATE_ARGUMENTS}; '
                           f'name an upsampler with type=..., or give only F.interpolate '
                           f'arguments as mmdet\'s FPN takes them')
        arguments = dict(upsample_cfg)
        if 'scale_factor' in arguments:
            arguments['interpolate_scale_factor'] = arguments.pop('scale_factor')
        return dict(type='InterpolateUpsample', **arguments)
    if 'mode' in upsample_cfg:
        raise ValueError(
            f'{owner}: upsample_cfg={dict(upsample_cfg)!r} holds mmdet FPN\'s '
            f'F.interpolate argument "mode" beside an upsampler type; a base config\'s '
            f'upsample_cfg merged into ours. Replace it: upsample_cfg=dict(_delete_=True, '
            f'type=...), or drop type for plain F.interpolate')
    return dict(upsample_cfg)


def check_fpn_arguments(in_channels, num_outs, start_level, end_level, add_extra_convs=False,
                        owner: str = 'FPNWithUpsampler') -> None:
    """The conditions mmdet's ``FPN`` (and ``FPN_CARAFE``) asserts without a message, as errors
    that name the argument."""
    if not isinstance(in_channels, list) or not in_channels:
        raise TypeError(f'{owner}: in_channels must be a non-empty list of ints (channels per '
                        f'backbone level), got {in_channels!r}')
    num_ins = len(in_channels)
    if not isinstance(add_extra_convs, (str, bool)) or (
            isinstance(add_extra_convs, str) and add_extra_convs not in EXTRA_CONV_SOURCES):
        raise ValueError(f'{owner}: add_extra_convs must be a bool or one of '
                         f'{EXTRA_CONV_SOURCES}, got {add_extra_convs!r}')
    if not 0 <= start_level < num_ins:
        raise ValueError(f'{owner}: start_level must be in [0, {num_ins}) for {num_ins} input '
                         f'levels, got {start_level}')
    if end_level in (-1, num_ins - 1):
        if num_outs < num_ins - start_level:
            raise ValueError(f'{owner}: num_outs={num_outs} must be >= the '
                             f'{num_ins - start_level} levels from start_level={start_level} to '
                             f'the last input')
    elif not start_level <= end_level < num_ins:
        raise ValueError(f'{owner}: end_level must be -1 or in [start_level={start_level}, '
                         f'{num_ins}), got {end_level}')
    elif num_outs != end_level - start_level + 1:
        raise ValueError(f'{owner}: num_outs={num_outs} must equal end_level - start_level + 1 '
                         f'= {end_level - start_level + 1} when end_level is not the last level')


class TopDownUpsamplers:
    """What every mmdynup FPN neck adds to its mmdet host: ``upsamplers`` (one per top-down step,
    all at ``out_channels``), the top-down merges through :meth:`Upsampler.merge`, and the
    ``upsampler_init`` choice. Mixed in before the mmdet neck class, whose constructor builds the
    convs."""

    def build_upsamplers(self, cfg: dict, upsampler_init: str, steps: int,
                         channels: Union[int, Sequence[int]]) -> None:
        """``steps`` upsamplers at ``channels`` (one width, or one per step: YOLOX's PAFPN
        upsamples each level at the width of the next finer one)."""
        owner = type(self).__name__
        if upsampler_init not in UPSAMPLER_INITS:
            raise ValueError(f'{owner}: upsampler_init must be one of {UPSAMPLER_INITS} '
                             f'(\'neck\': the neck\'s Xavier init also over the upsamplers, as '
                             f'the authors\' fork; \'own\': the upsampler\'s paper init), got '
                             f'{upsampler_init!r}')
        self.upsample_cfg = cfg
        self.upsampler_init = upsampler_init
        # Step i - 1 merges level i into level i - 1; only these steps exist (no spare ones).
        widths = [channels] * steps if isinstance(channels, int) else list(channels)
        self.upsamplers = nn.ModuleList(
            build_head_upsampler(cfg, 'upsample_cfg', owner, in_channels=width,
                                 guide_channels=width)
            for width in widths)

    def init_weights(self) -> None:
        """The mmdet neck's init; with ``upsampler_init='own'`` the upsamplers' own
        initialisation is restored afterwards."""
        if self.upsampler_init == 'neck':
            super().init_weights()
            return
        own = {name: tensor.clone() for name, tensor in self.upsamplers.state_dict().items()}
        super().init_weights()
        self.upsamplers.load_state_dict(own)

    def top_down(self, laterals: List[Tensor]) -> List[Tensor]:
        """Merge every level into the next finer one, coarsest first (returns a new list)."""
        merged = list(laterals)
        for level in range(len(merged) - 1, 0, -1):
            merged[level - 1] = self.upsamplers[level - 1].merge(merged[level], merged[level - 1])
        return merged


@MODELS.register_module()
class FPNWithUpsampler(TopDownUpsamplers, FPN):
    """FPN whose top-down path upsamples with ``upsample_cfg`` (any mmdynup upsampler).

    One upsampler per top-down step, ``upsamplers[i - 1]`` merging level ``i`` into ``i - 1``
    (three for mmdet's four-level R50 FPN), all built at ``out_channels``. Guided upsamplers
    (FADE, SAPA) take the finer lateral before the addition as guide. Every level's output size is
    that of its lateral, so inputs of any size work (e.g. a 500 x 375 image whose stride-32 level
    is not half of the stride-16 one): learned upsamplers keep the top-left window of their 2x
    output, interpolation resamples to exactly that size.

    Args:
        in_channels, out_channels, num_outs, **fpn_kwargs: as mmdet's ``FPN`` (``start_level``,
            ``end_level``, ``add_extra_convs``, ``norm_cfg``, ``init_cfg``, ...; keywords).
        upsample_cfg: upsampler config without ``in_channels`` / ``scale_factor`` /
            ``guide_channels`` (the neck sets them), e.g. ``dict(type='DySample', groups=4)``.
            ``None`` is nearest interpolation: the model then equals mmdet's ``FPN``.
        upsampler_init: ``'neck'``: the neck's ``init_cfg`` (Xavier on every ``Conv2d``) also
            re-initialises the upsamplers' convolutions, as the authors' detection fork did when
            it produced the published COCO numbers; ``'own'``: each upsampler keeps the
            initialisation its paper specifies (e.g. DySample's N(0, 0.001) offsets, zero scope).

    Shapes: ``inputs`` is a tuple of ``len(in_channels)`` maps (B, in_channels[l], H_l, W_l),
    coarser levels at least half the size of finer ones; the output is a tuple of ``num_outs``
    maps (B, out_channels, ., .), the first ones of the lateral sizes.

    Example:
        >>> import torch
        >>> neck = FPNWithUpsampler([8, 16, 32, 64], 16, 5, upsample_cfg=dict(type='DySample'))
        >>> feats = [torch.randn(1, c, s, s) for c, s in zip([8, 16, 32, 64], [94, 47, 24, 12])]
        >>> [tuple(out.shape[-2:]) for out in neck(tuple(feats))]
        [(94, 94), (47, 47), (24, 24), (12, 12), (6, 6)]
    """

    def __init__(self, in_channels: List[int], out_channels: int, num_outs: int, *,
                 upsample_cfg: Optional[Mapping] = None, upsampler_init: str = 'neck',
                 **fpn_kwargs) -> None:
        check_fpn_arguments(in_channels, num_outs, fpn_kwargs.get('start_level', 0),
                            fpn_kwargs.get('end_level', -1),
                            fpn_kwargs.get('add_extra_convs', False))
        cfg = upsampler_config(upsample_cfg)
        super().__init__(in_channels, out_channels, num_outs, **fpn_kwargs)
        self.build_upsamplers(cfg, upsampler_init, len(self.lateral_convs) - 1, out_channels)

    def pyramid_outputs(self, inputs: Sequence[Tensor], laterals: List[Tensor]) -> tuple:
        """3x3 ``fpn_convs`` on the merged laterals, then mmdet's extra levels
        (:func:`extra_levels`)."""
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        return extra_levels(self, inputs, laterals, outs)

    def forward(self, inputs: Tuple[Tensor, ...]) -> tuple:
        """(B, in_channels[l], H_l, W_l) per level -> ``num_outs`` maps (B, out_channels, ., .)."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'FPNWithUpsampler got {len(inputs)} input levels but was built with '
                             f'in_channels={self.in_channels} ({len(self.in_channels)} levels)')
        laterals = [conv(inputs[index + self.start_level])
                    for index, conv in enumerate(self.lateral_convs)]
        return self.pyramid_outputs(inputs, self.top_down(laterals))


def extra_levels(neck: FPN, inputs: Sequence[Tensor], laterals: List[Tensor],
                 outs: List[Tensor]) -> tuple:
    """mmdet's ``FPN`` / ``PAFPN`` levels beyond the backbone's, appended to ``outs`` (one map per
    lateral): stride-2 max pools of the last output, or the extra stride-2 ``fpn_convs`` on
    ``add_extra_convs``'s source (the last input, the last lateral or the last output)."""
    outs = list(outs)
    levels = len(laterals)
    if neck.num_outs <= levels:
        return tuple(outs)
    if not neck.add_extra_convs:
        for _ in range(neck.num_outs - levels):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
    if neck.add_extra_convs == 'on_input':
        source = inputs[neck.backbone_end_level - 1]
    elif neck.add_extra_convs == 'on_lateral':
        source = laterals[-1]
    else:
        source = outs[-1]
    outs.append(neck.fpn_convs[levels](source))
    for index in range(levels + 1, neck.num_outs):
        previous = F.relu(outs[-1]) if neck.relu_before_extra_convs else outs[-1]
        outs.append(neck.fpn_convs[index](previous))
    return tuple(outs)


def added_parameters(neck: nn.Module) -> int:
    """Parameters the upsamplers add to the neck (the README's "added params")."""
    upsamplers = getattr(neck, 'upsamplers', None)
    if upsamplers is None:
        return 0
    return sum(parameter.numel() for parameter in upsamplers.parameters())


__all__ = ['FPNWithUpsampler', 'TopDownUpsamplers', 'upsampler_config', 'added_parameters']
