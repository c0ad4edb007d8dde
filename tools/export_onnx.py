"""Export an upsampler or a segmentation model to ONNX and check it against onnxruntime.

    python tools/export_onnx.py upsampler NAME OUT.onnx [--in-channels 64] [--scale-factor 2]
        [--arg KEY=VALUE ...] [--input-size 32 32] [--batch 1] [--static]
    python tools/export_onnx.py model CONFIG OUT.onnx [--checkpoint CKPT]
        [--input-size 512 512] [--cfg-options KEY=VALUE ...]
    common options: [--opset 18] [--atol 1e-4] [--no-check]

``upsampler`` exports ``mmdynup.build_upsampler(dict(type=NAME, ...))``: inputs ``x``
(B, C, H, W) and, for guided upsamplers, ``guide`` (B, C, sH, sW); output (B, C, sH, sW). The
height and width are dynamic unless ``--static``.

``model`` exports an mmseg segmentor built from CONFIG (weights from ``--checkpoint``, else its
initialisation): input ``inputs``, the normalised image batch (B, 3, H, W) that the model's data
preprocessor produces; output ``seg_logits`` (B, K, H, W), the decode head's logits resized
bilinearly to the input, as mmseg's ``predict`` computes them before the argmax. Static size:
mmseg's backbones fix their shapes while tracing.

Export uses torch's ``torch.export``-based exporter (``dynamo=True``, onnxscript) under
``use_implementation('reference')``: the plain PyTorch ops of mmdynup, never a fast path's custom
autograd Function. Opset >= 16 (``GridSample``). Unless ``--no-check``, onnxruntime runs the file
on random inputs (for a dynamic export also at a second size) and the largest absolute
difference to PyTorch must be <= ``--atol``; the exit status is 1 when it is not.
"""
from __future__ import annotations

import argparse
import ast
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from mmdynup import build_upsampler  # noqa: E402
from mmdynup.ops.dispatch import use_implementation  # noqa: E402

#: ONNX GridSample (DySample, SAPA-deform) exists from opset 16.
MINIMUM_OPSET = 16
DEFAULT_OPSET = 18
DEFAULT_ATOL = 1e-4


@dataclass
class Parity:
    """onnxruntime against PyTorch at one input shape."""

    shapes: Dict[str, Tuple[int, ...]]
    max_abs_error: float

    def describe(self) -> str:
        shapes = ', '.join(f'{name} {"x".join(map(str, shape))}'
                           for name, shape in self.shapes.items())
        return f'{shapes}: max |onnxruntime - torch| = {self.max_abs_error:.2e}'


def check_opset(opset: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MINIMUM_OPSET:
        raise ValueError(f'opset must be an integer >= {MINIMUM_OPSET} (ONNX GridSample, used by '
                         f'DySample and SAPA-deform), got {opset!r}')
    return opset


def parse_value(text: str):
    """A command-line value as a Python literal when it is one (``4``, ``True``, ``'lp'``),
    else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_arguments(pairs: Sequence[str]) -> Dict[str, object]:
    arguments = {}
    for pair in pairs:
        key, separator, value = pair.partition('=')
        if not separator or not key:
            raise ValueError(f'--arg takes KEY=VALUE, got {pair!r}')
        arguments[key] = parse_value(value)
    return arguments


class SegmentationLogits(nn.Module):
    """An mmseg segmentor as ``inputs (B, 3, H, W) -> seg_logits (B, K, H, W)``: the decode
    head's logits, resized bilinearly to the input size as mmseg's ``predict`` does."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs: Tensor) -> Tensor:
        logits = self.segmentor(inputs, mode='tensor')
        return F.interpolate(logits, size=inputs.shape[2:], mode='bilinear',
                             align_corners=self.segmentor.align_corners)


def build_segmentor(config: str, checkpoint: Optional[str] = None,
                    cfg_options: Optional[dict] = None) -> nn.Module:
    """The mmseg segmentor of ``config`` on the CPU, in eval mode (weights from ``checkpoint``,
    read with ``torch.load(weights_only=True)`` by mmengine)."""
    from mmseg.apis import init_model
    return init_model(config, checkpoint, device='cpu', cfg_options=cfg_options).eval()


def export(module: nn.Module, inputs: Dict[str, Tensor], path: str, opset: int = DEFAULT_OPSET,
           dynamic_sizes: bool = False, output_name: str = 'output') -> str:
    """Export ``module(**inputs)`` to ``path``; with ``dynamic_sizes`` every input's height and
    width are symbolic (a guide's as ``s x`` those of ``x``)."""
    check_opset(opset)
    dynamic_shapes = None
    if dynamic_sizes:
        height = torch.export.Dim('height', min=2, max=4096)
        width = torch.export.Dim('width', min=2, max=4096)
        first = inputs[next(iter(inputs))]
        dynamic_shapes = {}
        for name, tensor in inputs.items():
            ratio_h, ratio_w = (tensor.shape[-2] // first.shape[-2],
                                tensor.shape[-1] // first.shape[-1])
            dynamic_shapes[name] = {2: height * ratio_h if ratio_h > 1 else height,
                                    3: width * ratio_w if ratio_w > 1 else width}
    module.eval()
    try:
        with torch.no_grad(), use_implementation('reference'):
            torch.onnx.export(module, tuple(inputs.values()), path, dynamo=True,
                              opset_version=opset, input_names=list(inputs),
                              output_names=[output_name], dynamic_shapes=dynamic_shapes,
                              verbose=False)
    except ModuleNotFoundError as error:
        if (error.name or '').startswith('onnxscript'):
            raise RuntimeError(exporter_problem(error)) from error
        raise
    return path


def exporter_problem(error: Optional[BaseException] = None) -> str:
    """Why torch's ONNX exporter cannot run here, for error messages and test skips."""
    try:
        import onnxscript
        found = f'onnxscript {onnxscript.__version__}'
    except ImportError:
        found = 'no onnxscript'
    detail = f' ({error})' if error is not None else ''
    return (f"torch {torch.__version__}'s ONNX exporter (dynamo=True) needs an onnxscript that "
            f"supports it; found {found}{detail}. Install onnxscript >= 0.6.2")


def onnxruntime_parity(path: str, module: nn.Module, inputs: Dict[str, Tensor]) -> Parity:
    """Run ``path`` in onnxruntime (CPU) on ``inputs`` and compare with ``module(**inputs)`` as
    PyTorch runs it by default (fast paths included)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    feeds = {name: tensor.numpy() for name, tensor in inputs.items()}
    (actual,) = session.run(None, feeds)
    with torch.no_grad():
        expected = module(*inputs.values())
    error = (torch.from_numpy(actual) - expected).abs().max().item()
    return Parity({name: tuple(tensor.shape) for name, tensor in inputs.items()}, error)


def upsampler_inputs(upsampler: nn.Module, batch: int, height: int, width: int,
                     seed: int = 0) -> Dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = {'x': torch.randn(batch, upsampler.in_channels, height, width,
                               generator=generator)}
    if upsampler.requires_guide:
        s = upsampler.scale_factor
        inputs['guide'] = torch.randn(batch, upsampler.guide_channels, s * height, s * width,
                                      generator=generator)
    return inputs


def export_upsampler(name: str, path: str, in_channels: int = 64, scale_factor: int = 2,
                     arguments: Optional[Dict[str, object]] = None,
                     input_size: Tuple[int, int] = (16, 16), batch: int = 1,
                     opset: int = DEFAULT_OPSET, dynamic_sizes: bool = True,
                     check: bool = True) -> List[Parity]:
    """Build, export and (with ``check``) compare the upsampler ``name``; see the module
    docstring. Returns the parity at the export size (and at a second size when dynamic)."""
    upsampler = build_upsampler(dict(type=name, in_channels=in_channels,
                                     scale_factor=scale_factor, guide_channels=in_channels,
                                     **(arguments or {}))).eval()
    height, width = input_size
    inputs = upsampler_inputs(upsampler, batch, height, width)
    export(upsampler, inputs, path, opset, dynamic_sizes)
    if not check:
        return []
    sizes = [(height, width)] + ([(height + 3, width + 5)] if dynamic_sizes else [])
    return [onnxruntime_parity(path, upsampler, upsampler_inputs(upsampler, batch, h, w, seed))
            for seed, (h, w) in enumerate(sizes)]


def export_segmentor(config: str, path: str, checkpoint: Optional[str] = None,
                     input_size: Tuple[int, int] = (512, 512), batch: int = 1,
                     opset: int = DEFAULT_OPSET, cfg_options: Optional[dict] = None,
                     check: bool = True) -> List[Parity]:
    """Build the segmentor of ``config``, export it as :class:`SegmentationLogits` and (with
    ``check``) compare it with onnxruntime at the export size."""
    model = SegmentationLogits(build_segmentor(config, checkpoint, cfg_options)).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {'inputs': torch.randn(batch, 3, *input_size, generator=generator)}
    export(model, inputs, path, opset, dynamic_sizes=False, output_name='seg_logits')
    return [onnxruntime_parity(path, model, inputs)] if check else []


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export an upsampler or a segmentation model to '
                                                 'ONNX and check it with onnxruntime')
    commands = parser.add_subparsers(dest='command', required=True)
    upsampler = commands.add_parser('upsampler', help='one registered upsampler')
    upsampler.add_argument('name', help='registered name, e.g. DySample')
    upsampler.add_argument('output', help='the .onnx file to write')
    upsampler.add_argument('--in-channels', type=int, default=64)
    upsampler.add_argument('--scale-factor', type=int, default=2)
    upsampler.add_argument('--arg', action='append', default=[], metavar='KEY=VALUE',
                           help='an operator argument, e.g. --arg groups=8 --arg dyscope=True')
    upsampler.add_argument('--input-size', type=int, nargs=2, default=(16, 16),
                           metavar=('H', 'W'), help='export size of x (default 16 16)')
    upsampler.add_argument('--batch', type=int, default=1)
    upsampler.add_argument('--static', action='store_true',
                           help='fix height and width (default: dynamic)')
    model = commands.add_parser('model', help='an mmseg segmentor config')
    model.add_argument('config', help='mmseg config file')
    model.add_argument('output', help='the .onnx file to write')
    model.add_argument('--checkpoint', help='weights (default: the config\'s initialisation)')
    model.add_argument('--input-size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    model.add_argument('--batch', type=int, default=1)
    model.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                       help='override config keys, e.g. model.decode_head.num_classes=4')
    for command in (upsampler, model):
        command.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                             help=f'ONNX opset (>= {MINIMUM_OPSET}; default {DEFAULT_OPSET})')
        command.add_argument('--atol', type=float, default=DEFAULT_ATOL,
                             help='largest accepted |onnxruntime - torch| (default 1e-4)')
        command.add_argument('--no-check', action='store_true',
                             help='export only, without the onnxruntime comparison')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_opset(args.opset)
    if args.command == 'upsampler':
        parities = export_upsampler(
            args.name, args.output, args.in_channels, args.scale_factor,
            parse_arguments(args.arg), tuple(args.input_size), args.batch, args.opset,
            dynamic_sizes=not args.static, check=not args.no_check)
        what = f'{args.name} ({"static" if args.static else "dynamic"} height and width)'
    else:
        parities = export_segmentor(args.config, args.output, args.checkpoint,
                                    tuple(args.input_size), args.batch, args.opset,
                                    cfg_options=args.cfg_options, check=not args.no_check)
        what = f'{osp.basename(args.config)} (static size)'
    print(f'exported {what} to {args.output} (opset {args.opset})')
    failed = False
    for parity in parities:
        verdict = 'ok' if parity.max_abs_error <= args.atol else f'FAILED (> {args.atol:g})'
        failed |= parity.max_abs_error > args.atol
        print(f'  onnxruntime parity at {parity.describe()}  {verdict}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
