"""Render what upsamplers do on an image: DySample's sampling offsets (arrows over the image),
CARAFE / FADE kernels and SAPA similarities at chosen points, and feature maps before / after
upsampling (PNG files).

    # every upsampler of a model (random weights without CHECKPOINT)
    python tools/visualize_upsampler.py IMAGE --config CONFIG [--checkpoint CKPT] --out-dir DIR
    # one upsampler on fixed random features of the image
    python tools/visualize_upsampler.py IMAGE --upsampler DySample [--option groups=4]
        [--checkpoint UPSAMPLER_STATE_DICT] [--channels 32] [--stride 8] --out-dir DIR

``--points X,Y ...`` are pixels of the image as the network saw it (after the test pipeline's
resize in config mode); by default three points spread over the image.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402
from torch import nn  # noqa: E402

import mmdynup  # noqa: E402
from mmdynup.converters.checkpoint_io import load_checkpoint, parse_option  # noqa: E402
from mmdynup.visualization import UpsamplerCall, record_upsampling, render_call  # noqa: E402

KINDS = ('offsets', 'kernels', 'features')
#: Where the default points sit, as fractions (x, y) of the image.
DEFAULT_POINTS = ((0.3, 0.3), (0.5, 0.5), (0.7, 0.65))


def read_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'cannot read image {path!r}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_features(image: np.ndarray, channels: int, stride: int, seed: int = 0) -> torch.Tensor:
    """Fixed features for a bare upsampler: a seeded random 3x3 conv of the normalised image,
    ReLU, average-pooled by ``stride``: (H, W, 3) -> (1, channels, H // stride, W // stride)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(channels, 3, 3, 3, generator=generator)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).float().permute(2, 0, 1)[None]
    pixels = (pixels - pixels.mean((2, 3), keepdim=True)) / (pixels.std() + 1e-6)
    features = torch.relu(nn.functional.conv2d(pixels, weight, padding=1))
    return nn.functional.avg_pool2d(features, stride)


def run_bare_upsampler(image: np.ndarray, kind: str, options: dict, channels: int, stride: int,
                       scale: int, checkpoint: Optional[str] = None,
                       ) -> Tuple[np.ndarray, List[UpsamplerCall]]:
    """One upsampler on :func:`image_features`; the image is cropped to a multiple of
    ``stride`` so that one low-resolution pixel is exactly ``stride`` image pixels."""
    if stride % scale:
        raise ValueError(f'--stride {stride} must be divisible by --scale {scale} (the guide has '
                         f'stride {stride} / {scale})')
    height, width = (image.shape[0] // stride) * stride, (image.shape[1] // stride) * stride
    if height == 0 or width == 0:
        raise ValueError(f'image {image.shape[1]}x{image.shape[0]} is smaller than --stride '
                         f'{stride}')
    image = image[:height, :width]
    upsampler = mmdynup.build_upsampler(dict(type=kind, in_channels=channels, scale_factor=scale,
                                             guide_channels=channels, **options))
    if checkpoint:
        upsampler.load_state_dict(load_checkpoint(checkpoint).state_dict, strict=True)
    upsampler.eval()
    x = image_features(image, channels, stride)
    guide = image_features(image, channels, stride // scale) if upsampler.requires_guide \
        else None
    with torch.no_grad(), record_upsampling(upsampler) as calls:
        upsampler(x, guide)
    return image, calls


def run_model(image_path: str, config: str, checkpoint: Optional[str] = None,
              cfg_options: Optional[dict] = None) -> Tuple[np.ndarray, List[UpsamplerCall]]:
    """Every upsampler call of one inference of an mmseg / mmdet model; returns the image as
    the network saw it (after the test pipeline and normalisation are undone)."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        model = init_model(cfg, checkpoint, device='cpu')
        infer = inference_model
    elif scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(cfg, checkpoint, device='cpu')
        infer = inference_detector
    else:
        raise ValueError(f'config default_scope={scope!r}; visualize_upsampler.py runs mmseg or '
                         f'mmdet configs')
    seen = {}

    def keep_input(_, __, output):
        seen['inputs'] = output['inputs'].detach()

    handle = model.data_preprocessor.register_forward_hook(keep_input)
    try:
        with torch.no_grad(), record_upsampling(model) as calls:
            infer(model, image_path)
    finally:
        handle.remove()
    return network_image(model.data_preprocessor, seen['inputs'][0]), calls


def network_image(preprocessor: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """Undo the data preprocessor's normalisation: (3, H, W) -> (H, W, 3) uint8 RGB."""
    image = inputs.float()
    if getattr(preprocessor, '_enable_normalize', False):
        image = image * preprocessor.std.view(3, 1, 1) + preprocessor.mean.view(3, 1, 1)
    if not getattr(preprocessor, '_channel_conversion', False):
        image = image.flip(0)  # still BGR as loaded by OpenCV
    return image.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def parse_points(texts: Sequence[str], image: np.ndarray) -> List[Tuple[float, float]]:
    if not texts:
        return [(fx * image.shape[1], fy * image.shape[0]) for fx, fy in DEFAULT_POINTS]
    points = []
    for text in texts:
        try:
            x, y = (float(value) for value in text.split(','))
        except ValueError:
            raise ValueError(f'--points takes X,Y pixel pairs, got {text!r}') from None
        points.append((x, y))
    return points


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Render upsampler sampling offsets, kernels, similarities and features')
    parser.add_argument('image', help='input image')
    parser.add_argument('--out-dir', required=True, help='folder for the PNG files')
    parser.add_argument('--config', help='mmseg / mmdet config whose upsamplers to show')
    parser.add_argument('--checkpoint', help='model checkpoint (with --config) or upsampler '
                                             'state dict (with --upsampler); default: random '
                                             'initialisation')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    parser.add_argument('--upsampler', help='one upsampler type, e.g. DySample')
    parser.add_argument('--option', action='append', default=[], metavar='NAME=VALUE',
                        help='upsampler argument (Python literal value); repeatable')
    parser.add_argument('--channels', type=int, default=32, help='feature channels (--upsampler)')
    parser.add_argument('--stride', type=int, default=8,
                        help='image pixels per low-resolution pixel (--upsampler)')
    parser.add_argument('--scale', type=int, default=2, help='scale factor (--upsampler)')
    parser.add_argument('--points', nargs='+', default=[], metavar='X,Y',
                        help='pixels where kernels / similarities / sampling points are shown')
    parser.add_argument('--kinds', nargs='+', choices=KINDS, default=list(KINDS),
                        help='pictures to render')
    args = parser.parse_args(argv)
    if (args.config is None) == (args.upsampler is None):
        parser.error('give either --config or --upsampler')
    return args


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.upsampler:
        options = dict(parse_option(text) for text in args.option)
        image, calls = run_bare_upsampler(read_rgb(args.image), args.upsampler, options,
                                          args.channels, args.stride, args.scale,
                                          args.checkpoint)
    else:
        image, calls = run_model(args.image, args.config, args.checkpoint, args.cfg_options)
    points = parse_points(args.points, image)
    print_log(f'recorded {len(calls)} upsampler call(s); rendering {", ".join(args.kinds)}',
              logger='current')
    written = []
    progress = ProgressBar(len(calls))
    for index, call in enumerate(calls):
        prefix = f'{index:02d}_{call.upsampler}' + (f'_{call.name}' if call.name else '')
        written += render_call(image, call, args.out_dir, prefix, points, args.kinds).values()
        progress.update()
    print()
    for path in written:
        print(path)
    return written


if __name__ == '__main__':
    main()
