"""What an upsampler does, as pictures: where DySample samples, which k x k kernels CARAFE / FADE
apply, which neighbours SAPA finds similar, and the feature map before and after upsampling.

Recording: :func:`record_upsampling` hooks every mmdynup upsampler of a model for one forward and
captures its input, guide and output, plus what it hands to the shared ops: the reassembly kernels
(B, G, k*k, oH, oW) given to :func:`mmdynup.ops.reassembly.reassemble` or ``gated_reassemble``
(CARAFE, FADE; for SAPA the softmax-normalised similarities) and the sampling positions
(B, G, [P,] oH, oW, 2) given to :func:`mmdynup.ops.point_sampling.point_sample`,
``subpixel_point_sample`` (DySample) or
:func:`mmdynup.ops.deformable_attention.local_deformable_attention` (SAPA-deform's and LDA-AQU's
P points). The ops expose no intermediates, so the recorder wraps those functions
where mmdynup modules imported them, for the duration of the block only; every upsampler that
uses the ops is covered without code of its own.

Rendering (matplotlib, Agg canvas, PNG files): :func:`render_sampling_offsets`,
:func:`render_kernels`, :func:`render_feature_maps`. Coordinates: the image shown is the one the
network saw, so a low-resolution pixel spans ``image_size / feature_size`` image pixels.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .ops import deformable_attention, point_sampling, reassembly
from .upsamplers.base import Upsampler

#: Op functions recorded, by the attribute name under which mmdynup modules import them.
RECORDED_OPS = {'reassemble': reassembly.reassemble,
                'gated_reassemble': reassembly.gated_reassemble,
                'point_sample': point_sampling.point_sample,
                'subpixel_point_sample': point_sampling.subpixel_point_sample,
                'local_deformable_attention': deformable_attention.local_deformable_attention}
#: The recorded ops that take reassembly kernels (``x, kernels, kernel_size, ...``).
KERNEL_OPS = ('reassemble', 'gated_reassemble')


@dataclass
class UpsamplerCall:
    """One forward of one upsampler (tensors detached, on the CPU).

    Attributes:
        name: module path inside the recorded model (``''`` for the model itself).
        upsampler: class name, e.g. ``'DySample'``.
        scale_factor: s.
        x: (B, C, H, W) low-resolution input.
        guide: (B, C_g, oH, oW) guide of guided upsamplers, else None.
        output: (B, C, oH, oW).
        kernels: (B, G, k*k, oH, oW) normalised reassembly kernels (CARAFE, FADE, SAPA).
        kernel_size: k, with ``kernels``.
        positions: (B, G, oH, oW, 2) (DySample) or (B, G, P, oH, oW, 2) (SAPA-deform) sampling
            positions ``(x, y)`` in pixels of ``x`` (pixel centres at ``i + 0.5``).
    """

    name: str
    upsampler: str
    scale_factor: int
    x: Optional[Tensor] = None
    guide: Optional[Tensor] = None
    output: Optional[Tensor] = None
    kernels: Optional[Tensor] = None
    kernel_size: Optional[int] = None
    positions: Optional[Tensor] = None


def _label(call: UpsamplerCall) -> str:
    return f'{call.upsampler} {call.name}' if call.name else call.upsampler


def _detach(tensor: Optional[Tensor]) -> Optional[Tensor]:
    return None if tensor is None else tensor.detach().float().cpu()


@contextlib.contextmanager
def record_upsampling(model: nn.Module) -> Iterator[List[UpsamplerCall]]:
    """Record every upsampler call of ``model`` inside the block (see the module docstring).

    Example:
        >>> up = mmdynup.build_upsampler(dict(type='DySample', in_channels=8))
        >>> with record_upsampling(up) as calls:
        ...     _ = up(torch.randn(1, 8, 4, 4))
        >>> calls[0].positions.shape
        torch.Size([1, 4, 8, 8, 2])
    """
    calls: List[UpsamplerCall] = []
    active: List[UpsamplerCall] = []
    upsamplers = [(name, module) for name, module in model.named_modules()
                  if isinstance(module, Upsampler)]
    if not upsamplers:
        raise ValueError(f'{type(model).__name__} contains no mmdynup upsampler to record; '
                         f'build it with an upsample_cfg naming one of mmdynup.list_upsamplers()')

    def before(name: str, module: Upsampler):
        def hook(_, args, kwargs):
            call = UpsamplerCall(name, type(module).__name__, module.scale_factor)
            call.x = _detach(args[0] if args else kwargs.get('x'))
            call.guide = _detach(args[1] if len(args) > 1 else kwargs.get('guide'))
            active.append(call)
        return hook

    def after(_, args, kwargs, output):
        call = active.pop()
        call.output = _detach(output)
        calls.append(call)

    def recording(op_name: str, function):
        def wrapper(*args, **kwargs):
            if active:
                arguments = inspect.signature(function).bind(*args, **kwargs).arguments
                if op_name in KERNEL_OPS:
                    active[-1].kernels = _detach(arguments['kernels'])
                    active[-1].kernel_size = int(arguments['kernel_size'])
                elif active[-1].positions is None:  # the first sampling: keys before values
                    if op_name == 'subpixel_point_sample':
                        positions = point_sampling.subpixel_sampling_positions(
                            arguments['offsets'], arguments['scale_factor'], arguments['size'],
                            arguments.get('initial'), arguments.get('offset_scale', 1.0))
                    else:
                        positions = arguments['positions']
                    active[-1].positions = _detach(positions)
            return function(*args, **kwargs)
        return wrapper

    handles = []
    patched = []
    try:
        for name, module in upsamplers:
            handles.append(module.register_forward_pre_hook(before(name, module),
                                                            with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
        for module_name, module in list(sys.modules.items()):
            if not module_name.startswith('mmdynup.') or module is None:
                continue
            for op_name, function in RECORDED_OPS.items():
                if getattr(module, op_name, None) is function:
                    setattr(module, op_name, recording(op_name, function))
                    patched.append((module, op_name, function))
        yield calls
    finally:
        for handle in handles:
            handle.remove()
        for module, op_name, function in patched:
            setattr(module, op_name, function)


# --------------------------------------------------------------------------- geometry
def feature_to_image_scale(feature_size: Sequence[int], image_size: Sequence[int]
                           ) -> Tuple[float, float]:
    """(image px per feature px) along (x, y) for a feature map covering the whole image."""
    return image_size[1] / feature_size[1], image_size[0] / feature_size[0]


def offset_arrows(positions: Tensor, scale_factor: int, image_size: Sequence[int],
                  low_res_size: Sequence[int], step: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Arrows from each high-resolution pixel to where it samples, in image pixels.

    Args:
        positions: (oH, oW, 2) sampling positions ``(x, y)`` in low-resolution pixels.
        scale_factor: s; high-resolution pixel (i, j) sits at ``((j + 0.5) / s, (i + 0.5) / s)``
            in low-resolution pixels, where zero offsets (bilinear sampling) leave it.
        image_size: (height, width) of the image the arrows are drawn on.
        low_res_size: (H, W) of the upsampler's input.
        step: keep every ``step``-th high-resolution pixel along each axis.

    Returns:
        ``(starts, vectors)``, each (N, 2) ``(x, y)`` in image pixels.
    """
    out_h, out_w = positions.shape[:2]
    rows = (torch.arange(out_h, dtype=positions.dtype) + 0.5) / scale_factor
    cols = (torch.arange(out_w, dtype=positions.dtype) + 0.5) / scale_factor
    own = torch.stack(torch.broadcast_tensors(cols[None, :], rows[:, None]), dim=-1)
    own, sampled = own[::step, ::step].reshape(-1, 2), positions[::step, ::step].reshape(-1, 2)
    to_image = torch.tensor(feature_to_image_scale(low_res_size, image_size),
                            dtype=positions.dtype)
    return (own * to_image).numpy(), ((sampled - own) * to_image).numpy()


def kernel_window(kernels: Tensor, kernel_size: int, scale_factor: int, point: Tuple[int, int],
                  ) -> Tuple[np.ndarray, Tuple[int, int]]:
    """The k x k kernel of high-resolution pixel ``point = (row, col)`` and the low-resolution
    pixel (row, col) at the centre of its window (its parent ``(row // s, col // s)``).

    ``kernels`` is (k*k, oH, oW) for one image and group; tap ``t`` is window offset
    ``(t // k - k // 2, t % k - k // 2)`` (row, col), as in :func:`reassemble`.
    """
    row, col = point
    window = kernels[:, row, col].reshape(kernel_size, kernel_size).numpy()
    return window, (row // scale_factor, col // scale_factor)


def pca_rgb(features: Tensor, basis: Optional[Tensor] = None,
            value_range: Optional[Tuple[np.ndarray, np.ndarray]] = None,
            ) -> Tuple[np.ndarray, Tensor, Tuple[np.ndarray, np.ndarray]]:
    """(C, H, W) -> (H, W, 3) in [0, 1]: projection on the top three principal components.

    Pass the ``basis`` (C, 3) and ``value_range`` returned for one map to colour another map of
    the same channels identically (before / after upsampling).
    """
    channels, height, width = features.shape
    pixels = features.reshape(channels, -1).t().double()
    if basis is None:
        centred = pixels - pixels.mean(0, keepdim=True)
        _, _, right = torch.linalg.svd(centred, full_matrices=False)
        basis = right[:3].t()
        if basis.shape[1] < 3:  # fewer than three channels: pad with zero components
            basis = torch.cat([basis, basis.new_zeros(channels, 3 - basis.shape[1])], dim=1)
    projected = (pixels @ basis).numpy()
    if value_range is None:
        value_range = (projected.min(0), projected.max(0))
    low, high = value_range
    rgb = (projected - low) / np.maximum(high - low, 1e-12)
    return np.clip(rgb, 0, 1).reshape(height, width, 3), basis, value_range


# --------------------------------------------------------------------------- rendering
def _figure(width_inches: float, height_inches: float):
    # A bare Figure with an Agg canvas: no pyplot state, no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width_inches, height_inches), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    figure.savefig(path, format='png', bbox_inches='tight')
    return path


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must be an (H, W, 3) RGB array, got '
                         f'{getattr(image, "shape", type(image).__name__)}')
    return image


def _axes_over_image(figure, image: np.ndarray, position: Tuple[int, int, int] = (1, 1, 1)):
    axes = figure.add_subplot(*position)
    axes.imshow(image, extent=(0, image.shape[1], image.shape[0], 0), interpolation='nearest')
    axes.set_xlim(0, image.shape[1])
    axes.set_ylim(image.shape[0], 0)
    axes.set_xticks([])
    axes.set_yticks([])
    return axes


def render_sampling_offsets(image: np.ndarray, call: UpsamplerCall, path: str,
                            batch_index: int = 0, arrows_per_row: int = 32,
                            points: Sequence[Tuple[float, float]] = ()) -> str:
    """DySample: one arrow per (sub-sampled) high-resolution pixel from its own position to where
    it samples, one colour per group. SAPA-deform: its P sampling points at ``points``.

    Args:
        image: (H, W, 3) RGB (uint8 or float in [0, 1]) that the upsampler's input covers.
        call: a recorded call with ``positions``.
        path: PNG file to write.
        batch_index: which image of the batch.
        arrows_per_row: density of the arrow grid.
        points: ``(x, y)`` image pixels (SAPA-deform).
    """
    image = _check_image(image)
    if call.positions is None:
        raise ValueError(f'{call.upsampler} ({call.name or "model"}) samples no points; sampling '
                         f'offsets exist for DySample and SAPA-deform')
    positions = call.positions[batch_index]
    low_res_size = call.x.shape[-2:]
    to_image = feature_to_image_scale(low_res_size, image.shape[:2])
    figure = _figure(8, 8 * image.shape[0] / image.shape[1])
    axes = _axes_over_image(figure, image)
    colours = _group_colours(positions.shape[0])
    if positions.dim() == 4:  # (G, oH, oW, 2)
        step = max(1, math.ceil(positions.shape[2] / arrows_per_row))
        arrows = [offset_arrows(group, call.scale_factor, image.shape[:2], low_res_size, step)
                  for group in positions]
        longest = max(float(np.abs(vectors).max()) for _, vectors in arrows)
        spacing = step * to_image[0] / call.scale_factor
        # Arrows are magnified to at most 0.8 grid spacings when offsets are tiny (e.g. at init).
        magnify = max(1.0, 0.8 * spacing / longest) if longest > 0 else 1.0
        for (starts, vectors), colour in zip(arrows, colours):
            axes.quiver(starts[:, 0], starts[:, 1], vectors[:, 0] * magnify,
                        vectors[:, 1] * magnify, color=colour, angles='xy', scale_units='xy',
                        scale=1, width=0.002)
        axes.set_title(f'{_label(call)}: sampling offsets, '
                       f'{positions.shape[0]} group(s), arrows x{magnify:.3g}')
    else:  # (G, P, oH, oW, 2)
        if not points:
            raise ValueError('points are needed to show SAPA-deform\'s sampling points: give '
                             '(x, y) image pixels')
        high_res = positions.shape[-3:-1]
        for x_image, y_image in points:
            row, col = _high_res_pixel((x_image, y_image), image.shape[:2], high_res)
            axes.plot([x_image], [y_image], marker='+', color='white', markersize=12)
            for group, colour in zip(positions, colours):
                sampled = group[:, row, col].numpy() * np.array(to_image)
                axes.scatter(sampled[:, 0], sampled[:, 1], s=12, color=colour)
        axes.set_title(f'{_label(call)}: sampling points at {len(points)} '
                       f'pixel(s), {positions.shape[0]} group(s)')
    return _save(figure, path)


def _group_colours(groups: int) -> List[Tuple[float, ...]]:
    from matplotlib import colormaps
    palette = colormaps['tab10']
    return [palette(index % 10) for index in range(groups)]


def _high_res_pixel(point: Tuple[float, float], image_size: Sequence[int],
                    high_res_size: Sequence[int]) -> Tuple[int, int]:
    """(row, col) of the high-resolution pixel under image pixel ``(x, y)``."""
    x_image, y_image = point
    if not (0 <= x_image < image_size[1] and 0 <= y_image < image_size[0]):
        raise ValueError(f'point {point} lies outside the {image_size[1]}x{image_size[0]} '
                         f'(width x height) image')
    row = int(y_image * high_res_size[0] / image_size[0])
    col = int(x_image * high_res_size[1] / image_size[1])
    return row, col


def render_kernels(image: np.ndarray, call: UpsamplerCall, points: Sequence[Tuple[float, float]],
                   path: str, batch_index: int = 0, group: int = 0) -> str:
    """CARAFE / FADE kernels (SAPA: similarities) of the high-resolution pixels under ``points``.

    Left: the image with each point's k x k low-resolution window, cells shaded by their weight.
    Right: each kernel as a k x k table of weights.
    """
    image = _check_image(image)
    if call.kernels is None:
        raise ValueError(f'{call.upsampler} ({call.name or "model"}) recorded no reassembly '
                         f'kernels; kernels exist for CARAFE, FADE and SAPA')
    if not points:
        raise ValueError('points must name at least one (x, y) image pixel')
    kernels = call.kernels[batch_index, group]
    k, s = call.kernel_size, call.scale_factor
    cell_x, cell_y = feature_to_image_scale(call.x.shape[-2:], image.shape[:2])
    what = 'similarity' if call.upsampler.startswith('SAPA') else 'kernel'
    columns = len(points) + 1
    figure = _figure(4 * columns, 4)
    axes = _axes_over_image(figure, image, (1, columns, 1))
    colours = _group_colours(len(points))
    windows = []
    for index, (point, colour) in enumerate(zip(points, colours)):
        row, col = _high_res_pixel(point, image.shape[:2], kernels.shape[-2:])
        window, (parent_row, parent_col) = kernel_window(kernels, k, s, (row, col))
        windows.append(window)
        left = (parent_col - k // 2) * cell_x
        top = (parent_row - k // 2) * cell_y
        axes.imshow(window, cmap='magma', alpha=0.6, vmin=0, vmax=float(window.max()) or 1.0,
                    extent=(left, left + k * cell_x, top + k * cell_y, top),
                    interpolation='nearest')
        axes.plot([point[0]], [point[1]], marker='+', color=colour, markersize=14, mew=2)
        panel = figure.add_subplot(1, columns, index + 2)
        # One honest scale from 0: a near-uniform kernel looks uniform.
        panel.imshow(window, cmap='magma', vmin=0, vmax=float(window.max()) or 1.0,
                     interpolation='nearest')
        for (r, c), weight in np.ndenumerate(window):
            panel.text(c, r, f'{weight:.2f}', ha='center', va='center', fontsize=7,
                       color='white' if weight < 0.6 * window.max() else 'black')
        panel.set_title(f'({point[0]:.0f}, {point[1]:.0f}) -> parent ({parent_col}, '
                        f'{parent_row})', color=colour, fontsize=9)
        panel.set_xticks([])
        panel.set_yticks([])
    axes.set_xlim(0, image.shape[1])
    axes.set_ylim(image.shape[0], 0)
    axes.set_title(f'{_label(call)}: {k}x{k} {what}, group {group}')
    return _save(figure, path)


def render_feature_maps(call: UpsamplerCall, path: str, batch_index: int = 0) -> str:
    """Input, guide (if any) and output of one call, each as its top three principal components
    in RGB; input and output share one projection and colour range, so colours compare."""
    if call.x is None or call.output is None:
        raise ValueError(f'call {call.name!r} was not recorded completely (no input / output)')
    x, output = call.x[batch_index], call.output[batch_index]
    before, basis, value_range = pca_rgb(x)
    panels = [(f'input {tuple(x.shape[-2:])}', before)]
    if call.guide is not None:
        guide = call.guide[batch_index]
        panels.append((f'guide {tuple(guide.shape[-2:])}', pca_rgb(guide)[0]))
    if output.shape[0] == x.shape[0]:
        after = pca_rgb(output, basis, value_range)[0]
    else:  # an upsampler that changes the width gets its own projection
        after = pca_rgb(output)[0]
    panels.append((f'output {tuple(output.shape[-2:])}', after))
    figure = _figure(4 * len(panels), 4)
    for index, (title, picture) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        axes.imshow(picture, interpolation='nearest')
        axes.set_title(title, fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f'{_label(call)}: features (top-3 principal components)')
    return _save(figure, path)


def render_call(image: np.ndarray, call: UpsamplerCall, out_dir: str, prefix: str,
                points: Sequence[Tuple[float, float]], kinds: Sequence[str]) -> Dict[str, str]:
    """Every picture of ``kinds`` (``'offsets'``, ``'kernels'``, ``'features'``) that ``call``
    supports, as ``<out_dir>/<prefix>_<kind>.png``; returns kind -> path."""
    import os.path as osp
    written = {}
    if 'offsets' in kinds and call.positions is not None:
        written['offsets'] = render_sampling_offsets(
            image, call, osp.join(out_dir, f'{prefix}_offsets.png'), points=points)
    if 'kernels' in kinds and call.kernels is not None:
        name = 'similarity' if call.upsampler.startswith('SAPA') else 'kernels'
        written['kernels'] = render_kernels(image, call, points,
                                            osp.join(out_dir, f'{prefix}_{name}.png'))
    if 'features' in kinds:
        written['features'] = render_feature_maps(call,
                                                  osp.join(out_dir, f'{prefix}_features.png'))
    return written
