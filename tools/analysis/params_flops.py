"""Parameters and FLOPs of a config's model (the numbers of the README model-zoo tables), or of one
upsampler at a given feature size.

    python tools/analysis/params_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]
    python tools/analysis/params_flops.py --upsampler DySample --channels 256 --size 64 64 \
        [--scale 2] [--option groups=4 ...]

FLOPs are counted by mmengine's ``FlopAnalyzer`` (jit trace; one multiply-add = one FLOP, the
convention of mmseg / mmdet tables) with mmdynup's ops on their plain reference implementation, so
the count is of the arithmetic, not of a fast path. Operators without a FLOP rule (element-wise
ops, softmax) are listed, not counted. A two-stage detector's RoI head depends on how many
proposals survive NMS; here the input is seeded noise.
"""
from __future__ import annotations

import argparse
import importlib
import os.path as osp
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.analysis import FlopAnalyzer, parameter_count  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from torch import nn  # noqa: E402

import mmdynup  # noqa: E402
from mmdynup.converters.checkpoint_io import parse_option  # noqa: E402
from mmdynup.ops.dispatch import use_implementation  # noqa: E402
from mmdynup.upsamplers import Upsampler  # noqa: E402

HOSTS = ('mmseg', 'mmdet')
#: Operators that only move or select data (no multiply-adds), left out of the not-counted list.
DATA_MOVEMENT_OPS = ('aten::im2col', 'aten::col2im', 'aten::pixel_shuffle',
                     'aten::pixel_unshuffle', 'aten::feature_dropout', 'aten::max_pool2d',
                     'aten::unfold', 'aten::repeat', 'aten::broadcast_tensors')
#: The data sample class of each host (the model's ``tensor`` mode reads image metadata).
DATA_SAMPLES = {'mmseg': 'mmseg.structures.SegDataSample',
                'mmdet': 'mmdet.structures.DetDataSample'}


@dataclass
class Complexity:
    """Counts for one traced forward.

    Attributes:
        parameters: all parameters of the module.
        flops: multiply-adds of the forward.
        flops_by_module: per submodule name ('' is the whole module).
        parameters_by_module: per submodule name.
        not_counted: operators without a FLOP rule and how often they ran.
    """

    parameters: int
    flops: int
    flops_by_module: Dict[str, int]
    parameters_by_module: Dict[str, int]
    not_counted: Counter


class TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` with only ``inputs`` traced (the data
    samples carry the image metadata that detectors' heads read)."""

    def __init__(self, model: nn.Module, data_samples: list) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode='tensor')


class GuidedForward(nn.Module):
    """An upsampler called as ``up(x, guide)``, for tracing with two inputs."""

    def __init__(self, upsampler: nn.Module) -> None:
        super().__init__()
        self.upsampler = upsampler

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.upsampler(x, guide)


def count(module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> Complexity:
    """Trace ``module(*inputs)`` once and count (see the module docstring for the rules)."""
    module.eval()
    with torch.no_grad(), use_implementation('reference'):
        analyzer = FlopAnalyzer(module, inputs)
        # Listed in the report instead of logged once per operator.
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analyzer.set_op_handle(**{name: None for name in DATA_MOVEMENT_OPS})
        # einsum's rule returns floats; a multiply-add count is an integer.
        flops_by_module = {name: int(value) for name, value in analyzer.by_module().items()}
        not_counted = Counter(analyzer.unsupported_ops())
    parameters_by_module = dict(parameter_count(module))
    return Complexity(parameters_by_module[''], flops_by_module[''], flops_by_module,
                      parameters_by_module, not_counted)


def build_model(cfg: Config) -> Tuple[nn.Module, str]:
    """The model of an mmseg / mmdet config, built (no weights loaded) in its host's scope."""
    scope = cfg.get('default_scope')
    if scope not in HOSTS:
        raise ValueError(f'config default_scope={scope!r}; params_flops.py analyses mmseg or mmdet '
                         f'configs (default_scope one of {HOSTS})')
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(scope)
    return MODELS.build(cfg.model), scope


def model_inputs(model: nn.Module, scope: str, height: int, width: int,
                 ) -> Tuple[nn.Module, Tuple[torch.Tensor]]:
    """A traceable wrapper of ``model`` and one seeded-noise image (1, 3, H, W)."""
    module_name, class_name = DATA_SAMPLES[scope].rsplit('.', 1)
    sample_class = getattr(importlib.import_module(module_name), class_name)
    shape = (height, width)
    data_sample = sample_class(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                             batch_input_shape=shape, scale_factor=(1.0, 1.0)))
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    return TensorForward(model, [data_sample]), (image,)


def upsampler_inputs(upsampler: Upsampler, channels: int, height: int, width: int,
                     ) -> Tuple[nn.Module, Tuple[torch.Tensor, ...]]:
    """An upsampler with a (1, C, H, W) input and, when guided, a (1, C_g, sH, sW) guide."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, height, width, generator=generator)
    if not upsampler.requires_guide:
        return upsampler, (x,)
    scale = upsampler.scale_factor
    guide = torch.randn(1, upsampler.guide_channels, scale * height, scale * width,
                        generator=generator)
    return GuidedForward(upsampler), (x, guide)


def upsampler_rows(model: nn.Module, result: Complexity, prefix: str = '') -> List[tuple]:
    """(name, type, parameters, FLOPs) of every mmdynup upsampler inside ``model``."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, Upsampler):
            key = prefix + name
            rows.append((name, type(module).__name__, result.parameters_by_module.get(key, 0),
                         result.flops_by_module.get(key, 0)))
    return rows


def human(value: float) -> str:
    """1234567 -> '1.23M' (three significant figures, K / M / G / T)."""
    for unit, size in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(value) >= size:
            return f'{value / size:.3g}{unit}'
    return str(int(value))


def report(title: str, input_shapes: Sequence[Sequence[int]], result: Complexity,
           upsamplers: Sequence[tuple]) -> str:
    """Markdown tables for the README, then the operators that were not counted."""
    shapes = ', '.join('x'.join(map(str, shape)) for shape in input_shapes)
    lines = ['| model | input | params | FLOPs |', '|---|---|---|---|',
             f'| {title} | {shapes} | {human(result.parameters)} | {human(result.flops)} |', '',
             f'parameters: {result.parameters}', f'FLOPs (multiply-adds): {result.flops}']
    if upsamplers:
        lines += ['', '| upsampler | type | params | FLOPs |', '|---|---|---|---|']
        lines += [f'| {name} | {kind} | {human(params)} | {human(flops)} |'
                  for name, kind, params, flops in upsamplers]
        total_params = sum(row[2] for row in upsamplers)
        total_flops = sum(row[3] for row in upsamplers)
        lines.append(f'| all upsamplers | | {human(total_params)} | {human(total_flops)} |')
    if result.not_counted:
        listed = ', '.join(f'{op} x{times}' for op, times in sorted(result.not_counted.items()))
        lines += ['', f'not counted (no FLOP rule): {listed}']
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs of a config\'s model or of one upsampler')
    parser.add_argument('config', nargs='?', help='mmseg / mmdet config file')
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input image size (default: 512 512 for mmseg, 800 1333 for mmdet)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.backbone.depth=18')
    parser.add_argument('--upsampler', help='analyse one upsampler type instead of a config')
    parser.add_argument('--channels', type=int, default=256, help='upsampler input channels')
    parser.add_argument('--size', type=int, nargs=2, default=(64, 64), metavar=('H', 'W'),
                        help='upsampler input (low-resolution) size')
    parser.add_argument('--scale', type=int, default=2, help='upsampler scale factor')
    parser.add_argument('--option', action='append', default=[], metavar='NAME=VALUE',
                        help='upsampler argument (Python literal value); repeatable')
    args = parser.parse_args(argv)
    if (args.config is None) == (args.upsampler is None):
        parser.error('give either CONFIG or --upsampler TYPE')
    return args


def analyse_config(config: str, shape: Optional[Sequence[int]] = None,
                   cfg_options: Optional[dict] = None) -> Tuple[Complexity, str]:
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model, scope = build_model(cfg)
    height, width = shape or ((512, 512) if scope == 'mmseg' else (800, 1333))
    wrapper, inputs = model_inputs(model, scope, height, width)
    print_log(f'tracing {osp.basename(config)} at 1x3x{height}x{width}', logger='current')
    result = count(wrapper, inputs)
    title = osp.splitext(osp.basename(config))[0]
    return result, report(title, [inputs[0].shape], result,
                          upsampler_rows(model, result, prefix='model.'))


def analyse_upsampler(kind: str, channels: int, size: Sequence[int], scale: int,
                      options: Optional[dict] = None) -> Tuple[Complexity, str]:
    upsampler = mmdynup.build_upsampler(dict(type=kind, in_channels=channels,
                                             scale_factor=scale, **(options or {})))
    module, inputs = upsampler_inputs(upsampler, channels, *size)
    result = count(module, inputs)
    return result, report(kind, [tensor.shape for tensor in inputs], result, [])


def main(argv=None) -> Complexity:
    args = parse_args(argv)
    if args.upsampler:
        options = dict(parse_option(text) for text in args.option)
        result, text = analyse_upsampler(args.upsampler, args.channels, args.size, args.scale,
                                         options)
    else:
        result, text = analyse_config(args.config, args.shape, args.cfg_options)
    print(text)
    return result


if __name__ == '__main__':
    main()
