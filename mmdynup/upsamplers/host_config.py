"""How a decode head or neck (mmseg, mmdet) turns its ``upsample_cfg`` into upsamplers, and how it calls them.

A head supplies the arguments that follow from its own layout (``in_channels``,
``guide_channels``, ``scale_factor``); the config names only the operator and the operator's own
arguments, e.g. ``dict(type='DySample', groups=4, dyscope=True)``. Every mistake a config can make
is reported at build time with the config key and the head that read it, so that a bad
``upsample_cfg`` never surfaces as a shape error in the middle of training.
"""
from __future__ import annotations

import difflib
from typing import Mapping, Optional

from torch import Tensor

from ..api import list_upsamplers
from ..registry import upsampler_classes
from ..upsamplers.base import Upsampler

#: Arguments every head sets itself; a config may repeat them only with the same value.
HEAD_SUPPLIED_ARGUMENTS = ('in_channels', 'guide_channels', 'scale_factor')


def resolve_upsampler_class(name, key: str, owner: str) -> type:
    """The registered upsampler class for ``name`` (a class, ``'DySample'`` or
    ``'mmdynup.DySample'``); an unknown name raises a KeyError naming ``key``."""
    if isinstance(name, type):
        if not issubclass(name, Upsampler):
            raise TypeError(f'{owner}: {key}.type={name.__name__} is not an mmdynup Upsampler; '
                            f'use one of {list_upsamplers()}')
        return name
    classes = upsampler_classes()
    short = name[len('mmdynup.'):] if isinstance(name, str) and name.startswith('mmdynup.') \
        else name
    if short in classes:
        return classes[short]
    hint = ''
    if isinstance(short, str):
        by_lower = {registered.lower(): registered for registered in classes}
        close = difflib.get_close_matches(short.lower(), list(by_lower), n=3, cutoff=0.5)
        if close:
            hint = f' (did you mean {[by_lower[match] for match in close]}?)'
    raise KeyError(f'{owner}: {key}.type={name!r} is not a registered upsampler{hint}; '
                   f'available: {list_upsamplers()}')


def build_head_upsampler(cfg: Mapping, key: str, owner: str, in_channels: int,
                         guide_channels: Optional[int] = None,
                         scale_factor: int = 2) -> Upsampler:
    """Build one upsampler of a head from its config.

    Args:
        cfg: ``dict(type=<registered name>, **operator_arguments)``. A ``guided`` key (the
            authors' forks need one) is accepted when it agrees with the operator.
        key: the config key that holds ``cfg`` (``'upsample_cfg'``), for error messages.
        owner: the head's class name, for error messages.
        in_channels: channels of the feature that is upsampled (and of the result).
        guide_channels: channels of the guide the head passes to guided operators.
        scale_factor: the step's integer scale.

    Returns:
        The upsampler, its output with ``in_channels`` channels (the head adds or concatenates
        it with ``in_channels``-channel features).
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f'{owner}: {key} must be a dict such as dict(type="DySample") (or None '
                        f'for the upstream interpolation), got {cfg!r} ({type(cfg).__name__})')
    arguments = dict(cfg)
    if 'type' not in arguments:
        raise KeyError(f'{owner}: {key} has no "type" key naming the upsampler (got keys '
                       f'{sorted(arguments)}); available: {list_upsamplers()}')
    name = arguments.pop('type')
    cls = resolve_upsampler_class(name, key, owner)
    guided = arguments.pop('guided', None)
    if guided is not None and bool(guided) != cls.requires_guide:
        needs = 'needs a guide' if cls.requires_guide else 'takes no guide'
        raise ValueError(f'{owner}: {key}.guided={guided!r} but {cls.__name__} {needs}; drop '
                         f'{key}.guided (the head / neck guides exactly the operators that need it)')
    supplied = dict(in_channels=in_channels, guide_channels=guide_channels,
                    scale_factor=scale_factor)
    for argument in HEAD_SUPPLIED_ARGUMENTS:
        if argument in arguments and arguments[argument] != supplied[argument]:
            raise ValueError(f'{owner}: {key}.{argument}={arguments[argument]!r} does not match '
                             f'the head / neck, which feeds {argument}={supplied[argument]!r} here; '
                             f'remove {key}.{argument} (the head sets it)')
    arguments.update(supplied)
    try:
        upsampler = cls(**arguments)
    except (TypeError, ValueError) as error:
        shown = {k: v for k, v in arguments.items() if k not in HEAD_SUPPLIED_ARGUMENTS}
        raise type(error)(f'{owner}: {key}=dict(type={cls.__name__!r}, '
                          f'{", ".join(f"{k}={v!r}" for k, v in shown.items())}) cannot be built '
                          f'with in_channels={in_channels}, guide_channels={guide_channels}, '
                          f'scale_factor={scale_factor}: {error}') from error
    if upsampler.out_channels != in_channels:
        raise ValueError(f'{owner}: {key} builds {cls.__name__} with {upsampler.out_channels} '
                         f'output channels, but the head combines its output with '
                         f'{in_channels}-channel features; remove the options that change its '
                         f'output width (e.g. {key}.out_channels)')
    return upsampler


def upsample_like(upsampler: Upsampler, x: Tensor, finer: Tensor) -> Tensor:
    """Upsample ``x`` (B, C, h, w) to the size of ``finer`` (B, C_g, H, W), guided by ``finer``
    when the operator needs a guide: (B, C, H, W); see :meth:`Upsampler.upsample_like` (also
    for levels more than s x apart)."""
    return upsampler.upsample_like(x, finer)
