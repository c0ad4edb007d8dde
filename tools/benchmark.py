"""Latency and memory of every registered upsampler against nearest / bilinear interpolation of
the same tensor, on the fast and on the reference path, side by side.

    python tools/benchmark.py                       # CPU, 2 threads, B=2, C=256, 64 and 128 -> x2
    python tools/benchmark.py --quick               # < 2 min: 32 -> 64, 2 repeats, one process
    python tools/benchmark.py --device cuda --sizes 120 --batch 1   # the papers' 256x120x120 x2
    python tools/benchmark.py --output bench.md --plot bench.png

What is measured, per (upsampler, path, size):

* forward latency (``torch.no_grad``) and forward+backward latency (upstream gradient given,
  gradients of the input, the guide and the parameters): median of ``--repeats`` runs after one
  warm-up, wall clock (``torch.cuda.synchronize`` around each run on CUDA);
* peak extra memory of one forward+backward: on CUDA ``torch.cuda.max_memory_allocated`` minus
  the memory held before the call; on CPU the process's peak resident set (``VmHWM``, reset
  through ``/proc/self/clear_refs`` and after ``malloc_trim`` returned freed heap pages) minus
  the resident set before the call. That counts every page the call touches - outputs, saved
  tensors, gradients, temporaries, allocator overhead - and nothing freed earlier can hide a
  peak because it was handed back to the OS first. By default every CPU case runs in a fresh
  process (``--isolation process``), so earlier cases leave no allocator state behind;
* an operator that overrides the top-down merge (FreqFusion, which also enhances the finer
  level) is measured as its whole merge step ``merge(x, guide)``, the others as ``up(x, guide)``;
* parameters, and forward FLOPs of matrix products and convolutions
  (``torch.utils.flop_counter`` on meta tensors, the reference math; interpolation, sampling and
  elementwise work count 0).

The path is ``fast`` (``impl='auto'``: tiled PyTorch on CPU, Triton on CUDA) or ``reference``
(:func:`mmdynup.ops.dispatch.use_implementation`); upsamplers whose autograd graph is the same
on both paths are run once (path ``-``). Ratios are taken against bilinear interpolation of the
same input in the same run.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Interpolation baselines benchmarked beside the registered upsamplers.
INTERPOLATIONS = ('nearest', 'bilinear')


# --- memory probes ------------------------------------------------------------------------------

def resident_bytes() -> int:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_resident_bytes() -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def release_free_memory(device: torch.device) -> None:
    """Return freed memory to the OS (CPU) / empty the cache (CUDA) and reset the peak."""
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # resets VmHWM to the current resident set


def memory_in_use(device: torch.device) -> int:
    return torch.cuda.memory_allocated() if device.type == 'cuda' else resident_bytes()


def memory_peak(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated() if device.type == 'cuda' else peak_resident_bytes()


# --- one case -------------------------------------------------------------------------------------

class Interpolation(torch.nn.Module):
    """``F.interpolate`` of the input by the scale factor (the baselines)."""

    requires_guide = False

    def __init__(self, mode: str, channels: int, scale_factor: int) -> None:
        super().__init__()
        self.mode, self.out_channels, self.scale_factor = mode, channels, scale_factor

    def forward(self, x, guide=None):
        extra = dict(align_corners=False) if self.mode == 'bilinear' else {}
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, **extra)


def build(name: str, channels: int, scale_factor: int, device) -> torch.nn.Module:
    if name in INTERPOLATIONS:
        return Interpolation(name, channels, scale_factor)
    from mmdynup import build_upsampler
    return build_upsampler(dict(type=name, in_channels=channels, scale_factor=scale_factor,
                                guide_channels=channels)).to(device)


def timed_call(module):
    """What is measured: the upsampler's call, or for an operator that overrides the top-down
    merge (FreqFusion also enhances the finer level) its whole merge step ``merge(x, guide)``."""
    from mmdynup.upsamplers import Upsampler
    if isinstance(module, Upsampler) and type(module).merge is not Upsampler.merge:
        return module.merge
    return module


def make_inputs(module, batch, channels, size, scale_factor, device, requires_grad=True):
    x = torch.randn(batch, channels, size, size, device=device, requires_grad=requires_grad)
    guide = None
    if getattr(module, 'requires_guide', False):
        guide = torch.randn(batch, channels, scale_factor * size, scale_factor * size,
                            device=device, requires_grad=requires_grad)
    grad = torch.randn(batch, module.out_channels, scale_factor * size, scale_factor * size,
                       device=device)
    return x, guide, grad


def forward_flops(name: str, batch: int, channels: int, size: int, scale_factor: int) -> int:
    """Matrix-product and convolution FLOPs of one forward (reference math, meta tensors)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmdynup.ops.dispatch import use_implementation
    module = build(name, channels, scale_factor, 'meta')
    x, guide, _ = make_inputs(module, batch, channels, size, scale_factor, 'meta', False)
    counter = FlopCounterMode(display=False)
    with counter, use_implementation('reference'), torch.no_grad():
        timed_call(module)(x, guide) if guide is not None else module(x)
    return counter.get_total_flops()


def run_case(case: Dict) -> Dict:
    """Measure one (upsampler, path, size); returns the row as a dict."""
    from mmdynup.ops.dispatch import use_implementation
    device = torch.device(case['device'])
    torch.set_num_threads(case['threads'])
    torch.manual_seed(0)
    module = build(case['name'], case['channels'], case['scale'], device)
    x, guide, grad = make_inputs(module, case['batch'], case['channels'], case['size'],
                                 case['scale'], device)
    arguments = (x,) if guide is None else (x, guide)
    parameters = list(module.parameters())
    call = timed_call(module)

    def synchronize():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    def forward_backward():
        for tensor in (x, guide, *parameters):
            if tensor is not None:
                tensor.grad = None
        call(*arguments).backward(grad)
        synchronize()

    def forward_only():
        with torch.no_grad():
            call(*arguments)
        synchronize()

    def median_ms(function) -> float:
        function()  # warm-up
        times = []
        for _ in range(case['repeats']):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    with use_implementation(case['impl']):
        release_free_memory(device)
        before = memory_in_use(device)
        forward_backward()
        peak_extra = memory_peak(device) - before
        fwd_ms = median_ms(forward_only)
        fwd_bwd_ms = median_ms(forward_backward)
    return dict(case, params=sum(p.numel() for p in parameters), fwd_ms=fwd_ms,
                fwd_bwd_ms=fwd_bwd_ms, peak_mib=peak_extra / 2 ** 20)


def run_isolated(case: Dict) -> Dict:
    """:func:`run_case` in a fresh interpreter (no allocator state from earlier cases)."""
    completed = subprocess.run([sys.executable, __file__, '--worker', json.dumps(case)],
                               capture_output=True, text=True, cwd=REPO_ROOT)
    if completed.returncode:
        raise RuntimeError(f"case {case['name']} ({case['impl']}, {case['size']}) failed:\n"
                           f'{completed.stderr[-3000:]}')
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- which upsamplers have a fast path ----------------------------------------------------------

def autograd_node_names(output: torch.Tensor) -> set:
    names, stack, seen = set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def has_fast_path(name: str, scale_factor: int) -> bool:
    """Whether the autograd graph differs between the fast and the reference path."""
    from mmdynup.ops.dispatch import use_implementation
    if name in INTERPOLATIONS:
        return False
    module = build(name, 32, scale_factor, 'cpu')
    x, guide, _ = make_inputs(module, 1, 32, 4, scale_factor, 'cpu')
    graphs = []
    for impl in ('reference', 'auto'):
        with use_implementation(impl):
            graphs.append(autograd_node_names(timed_call(module)(x, guide) if guide is not None
                                              else module(x)))
    return graphs[0] != graphs[1]


# --- report ---------------------------------------------------------------------------------------

def format_ratio(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}x' if value < 10 else f'{value:.0f}x'


def markdown_table(rows: List[Dict], fast_label: str) -> str:
    header = ('| upsampler | path | params | GFLOPs | fwd ms | fwd+bwd ms | fwd+bwd / bilinear '
              '| peak extra MiB | memory / bilinear | speed-up vs reference |\n'
              '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    blocks = []
    for size in sorted({row['size'] for row in rows}):
        sized = [row for row in rows if row['size'] == size]
        bilinear = next((row for row in sized if row['name'] == 'bilinear'), None)
        first = sized[0]
        where = (torch.cuda.get_device_name() if first['device'] == 'cuda'
                 else f"CPU, {first['threads']} threads")
        lines = [f"**{first['batch']} x {first['channels']} x {size} x {size} -> x{first['scale']}"
                 f"** ({where}, float32)", '', header]
        for row in sized:
            reference = next((other for other in sized if other['name'] == row['name']
                              and other['path'] == 'reference'), None)
            speed_up = (reference['fwd_bwd_ms'] / row['fwd_bwd_ms']
                        if reference is not None and row['path'] == fast_label else None)
            time_ratio = row['fwd_bwd_ms'] / bilinear['fwd_bwd_ms'] if bilinear else None
            memory_ratio = (row['peak_mib'] / bilinear['peak_mib']
                            if bilinear and bilinear['peak_mib'] > 0 else None)
            flops = '-' if row['flops'] is None else f"{row['flops'] / 1e9:.2f}"
            lines.append(
                f"| {row['name']} | {row['path']} | {row['params']:,} | {flops} "
                f"| {row['fwd_ms']:.1f} | {row['fwd_bwd_ms']:.1f} | {format_ratio(time_ratio)} "
                f"| {row['peak_mib']:.0f} | {format_ratio(memory_ratio)} "
                f"| {format_ratio(speed_up)} |")
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


def plot(rows: List[Dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(13, 5.5))
    for key in sorted({(row['name'], row['path']) for row in rows}):
        series = sorted((row for row in rows if (row['name'], row['path']) == key),
                        key=lambda row: row['size'])
        sizes = [row['size'] for row in series]
        style = '--' if key[1] == 'reference' else '-'
        label = key[0] if key[1] == '-' else f'{key[0]} ({key[1]})'
        time_axis.plot(sizes, [row['fwd_bwd_ms'] for row in series], style, marker='o',
                       label=label)
        memory_axis.plot(sizes, [max(row['peak_mib'], 1e-3) for row in series], style,
                         marker='o')
    for axis, title in ((time_axis, 'forward+backward latency (ms)'),
                        (memory_axis, 'peak extra memory, forward+backward (MiB)')):
        axis.set_xscale('log', base=2)
        axis.set_yscale('log')
        axis.set_xlabel('input height = width')
        axis.set_title(title)
        axis.grid(True, which='both', alpha=0.3)
    figure.legend(loc='center right', fontsize=7)
    figure.tight_layout(rect=(0, 0, 0.82, 1))
    figure.savefig(path, dpi=120)


# --- command line ---------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--threads', type=int, default=2, help='torch threads (CPU)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--sizes', type=int, nargs='+', default=[64, 128],
                        help='input heights (= widths)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs after one warm-up')
    parser.add_argument('--reference-repeats', type=int, default=None,
                        help='timed runs for the reference path (default: --repeats)')
    parser.add_argument('--upsamplers', nargs='+', default=None,
                        help='registered names and/or nearest, bilinear (default: all)')
    parser.add_argument('--reference-for', nargs='*', default=None, metavar='NAME',
                        help='run the reference path only for these upsamplers (default: all; '
                             'an empty list: none). The reference needs ~6 GB and ~25 s per '
                             'CARAFE-like call at 128 -> 256 on 2 CPU threads')
    parser.add_argument('--isolation', choices=('process', 'none'), default=None,
                        help='fresh process per case (default on CPU) or all in this one')
    parser.add_argument('--quick', action='store_true',
                        help='size 32, 2 repeats, the reference once and only for CARAFE, FADE, SAPAB '
                             '(unless --reference-for), one process: a smoke run in < 2 min')
    parser.add_argument('--output', type=Path, help='also write the Markdown tables here')
    parser.add_argument('--plot', type=Path, help='write a PNG plot here')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.reference_repeats = [32], 2, 1
        if args.reference_for is None:
            args.reference_for = ['CARAFE', 'FADE', 'SAPAB']
        args.isolation = args.isolation or 'none'
    args.isolation = args.isolation or ('process' if args.device == 'cpu' else 'none')
    for name in ('threads', 'batch', 'channels', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.scale < 2 or min(args.sizes) < 1:
        parser.error(f'--scale must be >= 2 and --sizes >= 1, got {args.scale}, {args.sizes}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_case(json.loads(args.worker))))
        return
    from mmdynup import list_upsamplers
    from mmdynup.ops.dispatch import resolve_implementation
    names = args.upsamplers or [*INTERPOLATIONS, *list_upsamplers()]
    if 'bilinear' not in names:
        names = ['bilinear', *names]  # every ratio is against it
    unknown = {*names, *(args.reference_for or [])} - set(INTERPOLATIONS) - set(list_upsamplers())
    if unknown:
        raise SystemExit(f'unknown upsamplers {sorted(unknown)}; registered: {list_upsamplers()}')
    fast_label = resolve_implementation(None, torch.empty(0, device=args.device))
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        for name in names:
            flops = None
            try:
                flops = forward_flops(name, args.batch, args.channels, size, args.scale)
            except (NotImplementedError, RuntimeError):  # an op without a meta kernel
                pass
            paths = [('-', 'auto')]
            if has_fast_path(name, args.scale):
                paths = [(fast_label, 'auto')]
                if args.reference_for is None or name in args.reference_for:
                    paths.append(('reference', 'reference'))
            for label, impl in paths:
                repeats = (args.reference_repeats or args.repeats) if label == 'reference' \
                    else args.repeats
                case = dict(name=name, path=label, impl=impl, size=size, batch=args.batch,
                            channels=args.channels, scale=args.scale, device=args.device,
                            threads=args.threads, repeats=repeats)
                row = run_isolated(case) if args.isolation == 'process' else run_case(case)
                row['flops'] = flops
                rows.append(row)
                print(f"  {name:>22} {label:>9} {size:>4}: fwd+bwd {row['fwd_bwd_ms']:9.1f} ms, "
                      f"peak extra {row['peak_mib']:8.0f} MiB", file=sys.stderr, flush=True)
    table = markdown_table(rows, fast_label)
    print(table)
    if args.output:
        args.output.write_text(table + '\n')
    if args.plot:
        plot(rows, args.plot)


if __name__ == '__main__':
    main()
