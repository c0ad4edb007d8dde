"""The upsampler configs of the authors' OpenMMLab forks -> mmdynup upsampler configs.

tiny-smart/segmentation-with-upsamplers and tiny-smart/detection-with-upsamplers carry the same
``upsamplers/build_upsampler.py``: an ``upsample_cfg`` names the operator by a lowercase ``type``
and needs a ``guided`` flag that tells the head / neck how to call it; any other key is read only
if that type knows it (with the fork's defaults below). This module maps such a config to ours
and gives the key renames inside one upsampler (most layouts already coincide); it knows no host,
so the UPerNet and FPN converters share it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from ..upsamplers.baselines import transposed_conv_padding


@dataclass(frozen=True)
class ForkUpsampler:
    """How one fork ``type`` maps to ours.

    Attributes:
        our_type: our registered class name.
        defaults: the fork's arguments for this type with its defaults (``build_upsampler``).
        guided: whether the fork calls it with the guide (``up(finer, coarser)``).
        renames: ``(fork key, our key)`` inside one upsampler, for the layouts that differ.
    """

    our_type: str
    defaults: Dict[str, object] = field(default_factory=dict)
    guided: bool = False
    renames: Tuple[Tuple[str, str], ...] = ()


FORK_UPSAMPLERS: Dict[str, ForkUpsampler] = {
    'nearest': ForkUpsampler('NearestUpsample'),
    'bilinear': ForkUpsampler('BilinearUpsample', dict(align_corners=False)),
    # nn.ConvTranspose2d directly, so its keys are 'weight' / 'bias'.
    'deconv': ForkUpsampler('DeconvUpsample',
                            dict(kernel_size=3, stride=2, padding=1, output_padding=1),
                            renames=(('weight', 'deconv.weight'), ('bias', 'deconv.bias'))),
    # nn.Sequential(conv, PixelShuffle), so the conv is '0'.
    'pixelshuffle': ForkUpsampler('PixelShuffleUpsample', dict(kernel_size=3, padding=1),
                                  renames=(('0', 'upsample_conv'),)),
    'carafe': ForkUpsampler('CARAFE', dict(up_kernel=5, up_group=1, encoder_kernel=3,
                                           encoder_dilation=1, compressed_channels=64)),
    'fade': ForkUpsampler('FADE', dict(up_kernel_size=5, gating=False), guided=True),
    'sapa': ForkUpsampler('SAPABase', dict(up_kernel_size=5, embedding_dim=32, qkv_bias=True,
                                           norm=True), guided=True),
    'sapadeform': ForkUpsampler('SAPADeform', dict(num_point=9, groups=4, embedding_dim=32,
                                                   qkv_bias=True, high_offset=True, norm=False),
                                guided=True),
    'dysample': ForkUpsampler('DySample', dict(style='lp', groups=4, dyscope=False)),
}
#: Fork types with no mmdynup equivalent.
UNSUPPORTED = {'sierra': 'SIERRA (parameter-free) is not implemented in mmdynup'}


def convert_fork_upsample_cfg(fork_cfg: Mapping, owner: str, key: str = 'upsample_cfg',
                              ) -> Tuple[dict, Tuple[Tuple[str, str], ...]]:
    """A fork ``upsample_cfg`` -> (our ``upsample_cfg``, key renames inside one upsampler).

    Args:
        fork_cfg: e.g. ``dict(type='dysample', guided=False, style='lp', groups=4,
            dyscope=True)``.
        owner: the fork's class reading it (``'FPN_UPSAMPLE'``), for error messages.
        key: the constructor argument holding it.

    Everything the fork would not build is refused with the reason: a missing ``type`` or
    ``guided`` (the fork raises ``KeyError``), a ``guided`` flag that does not match the type (the
    fork then calls the operator with the wrong number of inputs), unknown keys.
    """
    if not isinstance(fork_cfg, Mapping):
        raise TypeError(f'{owner}: {key} must be a dict, got {fork_cfg!r}')
    cfg = dict(fork_cfg)
    for required in ('type', 'guided'):
        if required not in cfg:
            raise ValueError(f'{owner}: {key}={cfg!r} has no {required!r}; the fork reads '
                             f'{key}[{required!r}] and fails without it (its own default '
                             f'dict(mode="nearest", guided=False) never built)')
    fork_type = cfg.pop('type')
    guided = cfg.pop('guided')
    if fork_type in UNSUPPORTED:
        raise ValueError(f'{owner}: {key}.type={fork_type!r}: {UNSUPPORTED[fork_type]}')
    if fork_type not in FORK_UPSAMPLERS:
        raise ValueError(f'{owner}: {key}.type={fork_type!r} is not a fork upsampler; the fork '
                         f'builds {sorted(FORK_UPSAMPLERS) + sorted(UNSUPPORTED)}')
    entry = FORK_UPSAMPLERS[fork_type]
    if bool(guided) != entry.guided:
        inputs = 'two inputs (guided=True)' if entry.guided else 'one input (guided=False)'
        raise ValueError(f'{owner}: {key}.guided={guided!r} but the fork\'s {fork_type!r} takes '
                         f'{inputs}; the fork would fail calling it')
    unknown = sorted(set(cfg) - set(entry.defaults))
    if unknown:
        raise ValueError(f'{owner}: {key} has {unknown}, which the fork\'s {fork_type!r} does not '
                         f'read; it reads {sorted(entry.defaults)}')
    arguments = dict(entry.defaults, **cfg)
    return dict(type=entry.our_type, **_our_arguments(fork_type, arguments, owner, key)), \
        entry.renames


def _our_arguments(fork_type: str, arguments: dict, owner: str, key: str) -> dict:
    """The fork's arguments for ``fork_type`` under our names (only the types whose differ)."""
    if fork_type == 'deconv':
        # Ours derives padding from the kernel (output exactly 2x); the fork's must agree.
        kernel = arguments['kernel_size']
        padding, output_padding = transposed_conv_padding(kernel, 2)
        expected = dict(stride=2, padding=padding, output_padding=output_padding)
        given = {name: arguments[name] for name in expected}
        if given != expected:
            raise ValueError(f'{owner}: {key} deconv with {given} does not upsample exactly 2x '
                             f'with kernel_size={kernel}; mmdynup\'s DeconvUpsample uses '
                             f'{expected}')
        return dict(upsample_kernel=kernel)
    if fork_type == 'pixelshuffle':
        kernel = arguments['kernel_size']
        if arguments['padding'] != kernel // 2:
            raise ValueError(f'{owner}: {key} pixelshuffle padding={arguments["padding"]} with '
                             f'kernel_size={kernel} changes the map size; mmdynup\'s '
                             f'PixelShuffleUpsample pads kernel_size // 2 = {kernel // 2}')
        return dict(upsample_kernel=kernel)
    if fork_type == 'dysample' and arguments['dyscope']:
        # The forks' DySample gives its dynamic-scope conv a bias (the standalone one does not).
        return dict(arguments, scope_bias=True)
    return arguments


def upsample_cfg_from_meta(meta: Optional[Mapping], component: str) -> Optional[dict]:
    """The fork's ``model.<component>.upsample_cfg`` (``'decode_head'`` or ``'neck'``) from the
    config text that mmengine stores in a checkpoint's ``meta['cfg']``; None when there is none."""
    text = meta.get('cfg') if isinstance(meta, Mapping) else None
    if not isinstance(text, str):
        return None
    from mmengine.config import Config
    model = Config.fromstring(text, file_format='.py').to_dict().get('model', {})
    return model.get(component, {}).get('upsample_cfg')
