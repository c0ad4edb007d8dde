"""Argument checks shared across mmdynup: upsamplers, heads, backbones and the MIRL model.

Each raises a ``TypeError`` / ``ValueError`` that names the argument, the value received and
what is accepted.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Union

from torch import Tensor


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` or raise an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f'{name} must be an integer >= {minimum}, got {value!r} '
                            f'({type(value).__name__})')
    value = int(value)
    if value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value}')
    return value


def check_scale_factor(scale_factor, minimum: int = 2) -> int:
    """Integer scale factors >= ``minimum`` only (every operator here upsamples by an integer s;
    a few, such as FRFU, also run at s = 1)."""
    if isinstance(scale_factor, (tuple, list)):
        if len(set(scale_factor)) != 1:
            raise ValueError(f'scale_factor must be one integer >= {minimum} (the same for '
                             f'height and width), got {scale_factor!r}')
        scale_factor = scale_factor[0]
    if isinstance(scale_factor, float) and not scale_factor.is_integer():
        raise ValueError(f'scale_factor must be an integer >= {minimum}, got {scale_factor!r}; '
                         f'use an integer scale such as 2 or 4')
    return check_positive_int('scale_factor', scale_factor, minimum=minimum)


def check_real_scale_factor(scale_factor, minimum: int = 1) -> Union[int, float]:
    """A real scale factor >= ``minimum`` (operators with ``fractional_scale``, such as LDA-AQU):
    returned as an int when integral (so ``s * H`` stays exact), else as a float."""
    if isinstance(scale_factor, (tuple, list)):
        if len(set(scale_factor)) != 1:
            raise ValueError(f'scale_factor must be one number >= {minimum} (the same for '
                             f'height and width), got {scale_factor!r}')
        scale_factor = scale_factor[0]
    if isinstance(scale_factor, bool) or not isinstance(scale_factor, numbers.Real):
        raise TypeError(f'scale_factor must be a number >= {minimum} such as 1.5 or 2, got '
                        f'{scale_factor!r} ({type(scale_factor).__name__})')
    if not math.isfinite(scale_factor) or scale_factor < minimum:
        raise ValueError(f'scale_factor must be a finite number >= {minimum}, got '
                         f'{scale_factor!r}')
    return int(scale_factor) if float(scale_factor).is_integer() else float(scale_factor)


def check_odd_kernel(name: str, value) -> int:
    """Kernel sizes must be odd so that the window is centred on the parent pixel."""
    value = check_positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f'{name} must be an odd integer (the window is centred on the '
                         f'low-resolution pixel), got {value}; use {value - 1} or {value + 1}')
    return value


def check_divisible(name: str, value: int, divisor: int, divisor_name: str) -> None:
    if value % divisor != 0:
        raise ValueError(f'{name}={value} must be divisible by {divisor_name}={divisor}')


def check_feature(name: str, tensor, channels: Optional[int] = None,
                  channels_name: str = 'in_channels') -> Tensor:
    """Check that ``tensor`` is a floating (B, C, H, W) tensor with ``channels`` channels."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor of shape (B, C, H, W), '
                        f'got {type(tensor).__name__}')
    if tensor.dim() != 4:
        raise ValueError(f'{name} must be 4-D (B, C, H, W), got shape {tuple(tensor.shape)} '
                         f'({tensor.dim()}-D); add or remove dimensions before upsampling')
    if not tensor.is_floating_point():
        raise TypeError(f'{name} must be a floating-point tensor, got dtype {tensor.dtype}; '
                        f'convert it with {name}.float()')
    if channels is not None and tensor.shape[1] != channels:
        raise ValueError(f'{name} has {tensor.shape[1]} channels but the upsampler was built with '
                         f'{channels_name}={channels}; build it with {channels_name}='
                         f'{tensor.shape[1]} or feed a {channels}-channel tensor')
    return tensor


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {value!r} ({type(value).__name__})')
    return value
