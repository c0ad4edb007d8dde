"""Converter for the authors' A2U kernel generator (dongdong93/a2u_matting
``scripts/BilinearModel.py``, class ``InterChannelUpDown``) -> :class:`~mmdynup.upsamplers.a2u.A2U`.

The official constructor is ``InterChannelUpDown(c, BatchNorm2d, conf)``: ``BatchNorm2d`` is never
used, and ``conf`` is the authors' yacs config, of which the class reads ``conf.MODEL.up_kernel_size``,
``encode_kernel_size``, ``share`` and ``downupsample_group`` (the reference records store it as a
nested dict; other config entries are ignored, as the class ignores them). Its forward ``m(x)``
maps the high-resolution encoder feature to ``(out_d, out_u)``: ``official_call`` returns that
pair from our module's kernel generator (``official_forward(x=...)``).

An even ``up_kernel_size`` has no centred reassembly window, so no :class:`A2U` upsampler exists
for it; the conversion then holds the kernel generator alone
(:class:`~mmdynup.upsamplers.a2u.AffinityKernelGenerator`, same names without the
``kernel_generator.`` prefix).
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..upsamplers.a2u import A2U, AffinityKernelGenerator
from .official import OfficialConversion, load_converted, register_official, rename_keys

OFFICIAL = 'BilinearModel.InterChannelUpDown'
_ARGUMENTS = ('c', 'BatchNorm2d', 'conf')
#: ``conf.MODEL`` entry -> our argument.
_CONF_ARGUMENTS = {'up_kernel_size': 'up_kernel_size', 'encode_kernel_size': 'encode_kernel_size',
                   'share': 'share', 'downupsample_group': 'groups'}
#: Official layout -> ours (the kernel generator's layers).
RENAMES = [('bnu.0', 'norm_u'), ('bnv.0', 'norm_v'), ('bconv_U.1', 'filter_u'),
           ('bconv_V.1', 'filter_v'), ('bconv_UP.1', 'upsample_scores'),
           ('bconv_DP.1', 'downsample_scores')]


def generator_arguments(kwargs: dict) -> dict:
    """``InterChannelUpDown(c, BatchNorm2d, conf)`` -> our kernel-generator arguments."""
    unknown = sorted(set(kwargs) - set(_ARGUMENTS))
    missing = sorted(set(_ARGUMENTS) - set(kwargs) - {'BatchNorm2d'})
    if unknown or missing:
        raise TypeError(f'{OFFICIAL}(c, BatchNorm2d, conf): unexpected arguments {unknown}, '
                        f'missing {missing}')
    conf = kwargs['conf']
    model = conf.get('MODEL') if isinstance(conf, Mapping) else getattr(conf, 'MODEL', None)
    absent = [name for name in _CONF_ARGUMENTS
              if model is None or (name not in model if isinstance(model, Mapping)
                                   else not hasattr(model, name))]
    if absent:
        raise TypeError(f'{OFFICIAL}: conf.MODEL must give {sorted(_CONF_ARGUMENTS)}; missing '
                        f'{absent} in conf={conf!r}')
    read = (lambda name: model[name]) if isinstance(model, Mapping) else \
        (lambda name: getattr(model, name))
    return {ours: read(name) for name, ours in _CONF_ARGUMENTS.items()}


def official_generator_forward(module, inputs: Mapping[str, Tensor]):
    """The official ``forward(x)``: ``(out_d, out_u)`` of the encoder feature ``x``."""
    generator = module.kernel_generator if isinstance(module, A2U) else module
    return generator(inputs['x'])


@register_official(OFFICIAL)
def convert_a2u(kwargs: dict, state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """``InterChannelUpDown`` with ``state_dict`` -> loaded :class:`A2U` guided by the official
    input (or the bare kernel generator for an even ``up_kernel_size``)."""
    arguments = generator_arguments(kwargs)
    channels = kwargs['c']
    if arguments['up_kernel_size'] % 2:
        module = A2U(channels, guide_channels=channels, downsample_kernels=True, **arguments)
        renames = [(old, f'kernel_generator.{new}') for old, new in RENAMES]
    else:
        module = AffinityKernelGenerator(channels, downsample_kernels=True, **arguments)
        renames = RENAMES
    renamed, official_names = rename_keys(state_dict, renames)
    load_converted(module, renamed, OFFICIAL)
    return OfficialConversion(module, official_names, input_roles={'x': 'guide'},
                              official_call=official_generator_forward)
