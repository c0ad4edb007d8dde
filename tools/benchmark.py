"""Latency and memory of every registered upsampler against nearest / bilinear interpolation of
the same tensor, on the fast and on the reference path, side by side.

    python tools/benchmark.py                       # CPU, 2 threads, B=2, C=256, 64 and 128 -> x2
    python tools/benchmark.py --quick               # < 2 min: 32 -> 64, 2 repeats, one process
    python tools/benchmark.py --device cuda --sizes 120 --batch 1   # the papers' 256x120x120 x2
    python tools/benchmark.py --output bench.md --plot bench.png
    python tools/benchmark.py --authors ~/src/dysample --upsamplers DySample DySamplePlus

What is measured, per (upsampler, path, size):

* forward latency (``torch.no_grad``) and forward+backward latency (upstream gradient given,
  gradients of the input, the guide and the parameters): median of ``--repeats`` runs after one
  warm-up, wall clock (``torch.cuda.synchronize`` around each run on CUDA);
* peak extra memory of one forward+backward (a training step's, after one warm-up step that
  pays one-time library state; per-call temporaries are counted): on CUDA ``torch.cuda.max_memory_allocated`` minus
  the memory held before the call; on CPU the process's peak resident set (``VmHWM``, reset
  through ``/proc/self/clear_refs`` and after ``malloc_trim`` returned freed heap pages) minus
  the resident set before the call. That counts every page the call touches - outputs, saved
  tensors, gradients, temporaries, allocator overhead - and nothing freed earlier can hide a
  peak because it was handed back to the OS first. During that step glibc maps every block of
  64 KiB or more on its own (``mallopt(M_MMAP_THRESHOLD)``, :func:`fixed_mmap_threshold`), so a
  freed tensor leaves the resident set at once: the figure is the peak of live memory. (With
  glibc's default, dynamic threshold, freed blocks could stay in the heap, and identical runs
  of SAPA-deform read 150-180 MiB at size 64 where this probe reads 116 MiB every time; the
  tables before December 2026 used that default.) By default every CPU case runs in two fresh
  processes (``--isolation process``): one measures the memory with that threshold set from its
  start, the other the times under the default allocator, and earlier cases leave no allocator
  state behind (``--isolation none``: times first, then the memory with the threshold set at
  that point, after the timing runs grew the heap);
* an operator that overrides the top-down merge (FreqFusion, which also enhances the finer
  level) is measured as its whole merge step ``merge(x, guide)``, the others as ``up(x, guide)``;
* parameters, and forward FLOPs of matrix products and convolutions
  (``torch.utils.flop_counter`` on meta tensors, the reference math; interpolation, sampling and
  elementwise work count 0).

The path is the fast one (``impl='auto'``: ``tiled`` PyTorch on CPU, ``native`` where a C++ CPU
kernel of :mod:`mmdynup.ops.native` runs, ``triton`` on CUDA) or ``reference``
(:func:`mmdynup.ops.dispatch.use_implementation`); upsamplers whose autograd graph is the same
on both paths are run once (path ``-``). Ratios are taken against bilinear interpolation of the
same input in the same run.

``--authors DIR`` also measures the authors' own modules (path ``authors``), side by side in the
same run: the files of their repositories that :data:`AUTHORS_MODULES` names (``dysample.py``
of tiny-smart/dysample, ``FADE_L2H.py`` / ``FADE_H2L.py`` of poppinace/fade, ``sapa_base.py`` /
``sapa_deform.py`` of tiny-smart/sapa) are looked up by file name anywhere under DIR, imported
by path, and built with the configuration of our row (mmcv's ``CARAFEPack`` comes from the
installed mmcv). They are not shipped with mmdynup. A module that does not import or run here
(a CUDA extension on the CPU, a missing dependency) is reported with the reason. The column
``vs authors`` is our forward+backward time over theirs; ``target`` checks the targets of
:data:`TARGETS` (issue 16) and prints ``met`` or ``missed`` with the figure.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Interpolation baselines benchmarked beside the registered upsamplers.
INTERPOLATIONS = ('nearest', 'bilinear')


# --- the authors' modules -----------------------------------------------------------------------

@dataclass(frozen=True)
class AuthorsModule:
    """How to build and call the authors' module that one of our upsamplers reimplements.

    Attributes:
        ours: our registered name, measured with the same configuration.
        file: the authors' file, found by this name under ``--authors DIR``; empty for a module
            of an installed package (``package``).
        cls: the class in that file.
        arguments: (channels, scale factor) -> the constructor arguments matching our defaults.
        guided: called ``m(guide, x)`` (the authors' high-resolution-first order), else ``m(x)``.
        package: the import name of an installed module (when ``file`` is empty).
    """

    ours: str
    file: str
    cls: str
    arguments: Callable[[int, int], Dict] = field(compare=False)
    guided: bool = False
    package: str = ''


def _dysample(style: str, dyscope: bool) -> Callable[[int, int], Dict]:
    return lambda channels, scale: dict(in_channels=channels, scale=scale, style=style, groups=4,
                                        dyscope=dyscope)


def _fade(channels: int, scale: int) -> Dict:
    return dict(in_channels_en=channels, in_channels_de=channels, scale=scale)


def _sapa(channels: int, scale: int) -> Dict:
    return dict(dim_y=channels, dim_x=channels, up_factor=scale)


#: The authors' modules ``--authors`` looks for (their repositories' file and class names).
AUTHORS_MODULES = (
    AuthorsModule('DySample', 'dysample.py', 'DySample', _dysample('lp', False)),
    AuthorsModule('DySamplePlus', 'dysample.py', 'DySample', _dysample('lp', True)),
    AuthorsModule('DySampleS', 'dysample.py', 'DySample', _dysample('pl', False)),
    AuthorsModule('DySampleSPlus', 'dysample.py', 'DySample', _dysample('pl', True)),
    AuthorsModule('FADE', 'FADE_L2H.py', 'FADE', _fade, guided=True),
    AuthorsModule('FADELite', 'FADE_L2H.py', 'FADELite', _fade, guided=True),
    AuthorsModule('SemiShiftUp', 'FADE_L2H.py', 'SemiShiftUp', _fade, guided=True),
    AuthorsModule('FADEECCV', 'FADE_H2L.py', 'FADE', _fade, guided=True),
    AuthorsModule('SAPABase', 'sapa_base.py', 'SAPA', _sapa, guided=True),
    AuthorsModule('SAPADeform', 'sapa_deform.py', 'SAPADeform', _sapa, guided=True),
    AuthorsModule('CARAFE', '', 'CARAFEPack',
                  lambda channels, scale: dict(channels=channels, scale_factor=scale),
                  package='mmcv.ops'),
)


def find_authors_file(directory: Path, file_name: str) -> Optional[Path]:
    """``file_name`` under ``directory`` (itself first, then the shallowest match below), or
    None. The authors' repositories keep some modules in subfolders
    (``pytorch_implementation/FADE_L2H.py``)."""
    matches = sorted(directory.rglob(file_name), key=lambda path: (len(path.parts), str(path)))
    return matches[0] if matches else None


def discover_authors_modules(directory: Path, names: List[str]) -> List[Tuple[AuthorsModule,
                                                                              str]]:
    """The authors' modules for our ``names``: (spec, source) with source a file path under
    ``directory`` or an installed package's name; modules absent from both are left out."""
    found = []
    for spec in AUTHORS_MODULES:
        if spec.ours not in names:
            continue
        if spec.file:
            path = find_authors_file(directory, spec.file)
            if path is not None:
                found.append((spec, str(path)))
        elif importlib.util.find_spec(spec.package.split('.')[0]) is not None:
            found.append((spec, spec.package))
    return found


def import_authors_module(source: str):
    """The authors' module from a file path (imported by path, its folder on ``sys.path`` for
    sibling imports) or an installed package's name."""
    if not source.endswith('.py'):
        return importlib.import_module(source)
    path = Path(source)
    name = f'authors_{path.stem}_{abs(hash(str(path.resolve())))}'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    sys.modules[name] = module
    return module


class AuthorsUpsampler(torch.nn.Module):
    """An authors' module called like ours: ``forward(x, guide=None)``."""

    def __init__(self, module: torch.nn.Module, channels: int, guided: bool) -> None:
        super().__init__()
        self.module, self.out_channels, self.requires_guide = module, channels, guided

    def forward(self, x, guide=None):
        return self.module(guide, x) if self.requires_guide else self.module(x)


def build_authors(case: Dict, device) -> torch.nn.Module:
    """The authors' module of an ``authors`` case, on ``device``."""
    module = getattr(import_authors_module(case['authors_source']), case['authors_class'])
    built = module(**case['authors_arguments'])
    return AuthorsUpsampler(built, case['channels'], case['authors_guided']).to(device)


# --- targets (issue 16) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Upper bounds for one of our rows: forward+backward time over bilinear's and over the
    authors' module's, peak extra memory over bilinear's (None: no bound)."""

    time_vs_bilinear: Optional[float] = None
    time_vs_authors: Optional[float] = None
    memory_vs_bilinear: Optional[float] = None


_DYSAMPLE_TARGET = Target(time_vs_authors=0.8, memory_vs_bilinear=1.5)
_GUIDED_KERNEL_TARGET = Target(memory_vs_bilinear=3.0)
#: The issue's targets per upsampler (CPU, forward + backward).
TARGETS = {
    'DySample': _DYSAMPLE_TARGET, 'DySamplePlus': _DYSAMPLE_TARGET,
    'DySampleS': _DYSAMPLE_TARGET, 'DySampleSPlus': _DYSAMPLE_TARGET,
    'SAPADeform': Target(time_vs_bilinear=10.0, memory_vs_bilinear=3.0),
    **{name: _GUIDED_KERNEL_TARGET for name in ('FADE', 'FADELite', 'FADEECCV', 'SAPAB',
                                                'SAPABase', 'SAPAG', 'SAPAI')},
}


def target_verdict(name: str, ratios: Dict[str, Optional[float]]) -> str:
    """``met`` / ``missed (...)`` for our row of ``name`` from its measured ratios (keys as the
    :class:`Target` fields); ``-`` without a target, ``not measured (...)`` where a ratio is
    missing (no ``--authors`` module)."""
    target = TARGETS.get(name)
    if target is None:
        return '-'
    missed, unmeasured = [], []
    for key, label in (('time_vs_bilinear', 'time / bilinear'),
                       ('time_vs_authors', 'time / authors'),
                       ('memory_vs_bilinear', 'memory / bilinear')):
        bound = getattr(target, key)
        if bound is None:
            continue
        value = ratios.get(key)
        if value is None:
            unmeasured.append(label)
        elif value > bound:
            missed.append(f'{label} {value:.2f}x > {bound:g}x')
    if missed:
        return 'missed (' + '; '.join(missed) + ')'
    if unmeasured:
        return 'not measured (' + ', '.join(unmeasured) + ')'
    return 'met'


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


#: glibc's mallopt parameter for the size from which malloc maps blocks instead of using the heap.
M_MMAP_THRESHOLD = -3
#: The threshold during memory measurement (glibc's default starts at 128 KiB and then grows
#: with the blocks freed, up to 32 MiB: later allocations below it stay in the heap).
MEASURE_MMAP_THRESHOLD = 64 * 1024
DEFAULT_MMAP_THRESHOLD = 128 * 1024


@contextlib.contextmanager
def fixed_mmap_threshold(device: torch.device) -> Iterator[None]:
    """On CPU (glibc), map every block of at least :data:`MEASURE_MMAP_THRESHOLD` bytes on its
    own inside the block, so freed tensors leave the resident set at once; the threshold is put
    back to glibc's initial value afterwards (no longer dynamic). Nothing on CUDA."""
    if device.type != 'cpu':
        yield
        return
    libc = ctypes.CDLL('libc.so.6')
    libc.mallopt(M_MMAP_THRESHOLD, MEASURE_MMAP_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)


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
    if case['path'] == 'authors':
        module = build_authors(case, device)
    else:
        module = build(case['name'], case['channels'], case['scale'], device)
    x, guide, grad = make_inputs(module, case['batch'], case['channels'], case['size'],
                                 case['scale'], device)
    arguments = (x,) if guide is None else (x, guide)
    parameters = list(module.parameters())
    call = timed_call(module)

    def synchronize():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    def clear_gradients():
        for tensor in (x, guide, *parameters):
            if tensor is not None:
                tensor.grad = None

    def forward_backward():
        clear_gradients()
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

    measure = case.get('measure', 'both')
    fwd_ms = fwd_bwd_ms = peak_extra = None
    with use_implementation(case['impl']):
        if measure in ('time', 'both'):
            # Under the default allocator (what a training run sees).
            fwd_ms = median_ms(forward_only)
            fwd_bwd_ms = median_ms(forward_backward)
        if measure in ('memory', 'both'):
            # One warm-up step, so that one-time state (lazy library initialisation, caches kept
            # across calls) is not counted; temporaries a step allocates again still are. On
            # CPU, blocks of 64 KiB and more are mapped and unmapped one by one
            # (fixed_mmap_threshold; from the process's start in a '--isolation process'
            # worker), so the peak resident set is the peak of live memory.
            with fixed_mmap_threshold(device):
                forward_backward()
                clear_gradients()
                release_free_memory(device)
                before = memory_in_use(device)
                forward_backward()
                peak_extra = memory_peak(device) - before
    return dict(case, params=sum(p.numel() for p in parameters), fwd_ms=fwd_ms,
                fwd_bwd_ms=fwd_bwd_ms,
                peak_mib=None if peak_extra is None else peak_extra / 2 ** 20)


def run_isolated(case: Dict) -> Dict:
    """:func:`run_case` in fresh interpreters (no allocator state from earlier cases): one
    measures the memory (glibc's mmap threshold fixed from its start, see
    :func:`fixed_mmap_threshold`), another the times (the default allocator)."""
    rows = {}
    for measure in ('memory', 'time'):
        env = dict(os.environ)
        if measure == 'memory' and case['device'] == 'cpu':
            env['MALLOC_MMAP_THRESHOLD_'] = str(MEASURE_MMAP_THRESHOLD)
        completed = subprocess.run(
            [sys.executable, __file__, '--worker', json.dumps(dict(case, measure=measure))],
            capture_output=True, text=True, cwd=REPO_ROOT, env=env)
        if completed.returncode:
            raise RuntimeError(f"case {case['name']} ({case['impl']}, {case['size']}) failed:\n"
                               f'{completed.stderr[-3000:]}')
        rows[measure] = json.loads(completed.stdout.strip().splitlines()[-1])
    return dict(rows['time'], peak_mib=rows['memory']['peak_mib'], measure='both')


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


def fast_path_label(name: str, scale_factor: int, default: str) -> Optional[str]:
    """The label of the upsampler's fast path: None where its autograd graph equals the
    reference's (one implementation), ``'native'`` where a C++ CPU kernel of
    :mod:`mmdynup.ops.native` runs on the CPU (its functions asked for the kernels), else
    ``default`` (the device's ``'auto'`` choice)."""
    import mmdynup.ops.native as native
    from mmdynup.ops.dispatch import use_implementation
    if name in INTERPOLATIONS:
        return None
    module = build(name, 32, scale_factor, 'cpu')
    x, guide, _ = make_inputs(module, 1, 32, 4, scale_factor, 'cpu')
    graphs, kernel_calls = [], []
    load = native.native_kernels

    def recorded(required: bool = False):
        kernels = load(required)
        if required:  # the autograd Functions ask with required=True when they run a kernel
            kernel_calls.append(1)
        return kernels

    native.native_kernels = recorded
    try:
        for impl in ('reference', 'auto'):
            with use_implementation(impl):
                graphs.append(autograd_node_names(timed_call(module)(x, guide)
                                                  if guide is not None else module(x)))
    finally:
        native.native_kernels = load
    if graphs[0] == graphs[1]:
        return None
    return 'native' if default == 'tiled' and kernel_calls else default


# --- report ---------------------------------------------------------------------------------------

def format_ratio(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}x' if value < 10 else f'{value:.0f}x'


def markdown_table(rows: List[Dict]) -> str:
    header = ('| upsampler | path | params | GFLOPs | fwd ms | fwd+bwd ms | fwd+bwd / bilinear '
              '| peak extra MiB | memory / bilinear | speed-up vs reference | vs authors '
              '| target |\n'
              '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|')
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
            def same(path):
                return next((other for other in sized if other['name'] == row['name']
                             and other['path'] == path), None)
            reference, authors = same('reference'), same('authors')
            ours = row['path'] not in ('reference', 'authors')
            speed_up = (reference['fwd_bwd_ms'] / row['fwd_bwd_ms']
                        if reference is not None and ours else None)
            ratios = dict(
                time_vs_bilinear=row['fwd_bwd_ms'] / bilinear['fwd_bwd_ms'] if bilinear else None,
                memory_vs_bilinear=(row['peak_mib'] / bilinear['peak_mib']
                                    if bilinear and bilinear['peak_mib'] > 0 else None),
                time_vs_authors=(row['fwd_bwd_ms'] / authors['fwd_bwd_ms']
                                 if authors is not None and ours else None))
            flops = '-' if row.get('flops') is None else f"{row['flops'] / 1e9:.2f}"
            lines.append(
                f"| {row['name']} | {row['path']} | {row['params']:,} | {flops} "
                f"| {row['fwd_ms']:.1f} | {row['fwd_bwd_ms']:.1f} "
                f"| {format_ratio(ratios['time_vs_bilinear'])} "
                f"| {row['peak_mib']:.0f} | {format_ratio(ratios['memory_vs_bilinear'])} "
                f"| {format_ratio(speed_up)} | {format_ratio(ratios['time_vs_authors'])} "
                f"| {target_verdict(row['name'], ratios) if ours else '-'} |")
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


def plot(rows: List[Dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(13, 5.5))
    names = sorted({row['name'] for row in rows})
    palette = plt.get_cmap('tab20')
    for key in sorted({(row['name'], row['path']) for row in rows}):
        series = sorted((row for row in rows if (row['name'], row['path']) == key),
                        key=lambda row: row['size'])
        sizes = [row['size'] for row in series]
        # One colour per upsampler, one line style per path.
        style = dict(linestyle={'reference': '--', 'authors': ':'}.get(key[1], '-'),
                     color=palette(names.index(key[0]) % palette.N), marker='o')
        label = key[0] if key[1] == '-' else f'{key[0]} ({key[1]})'
        time_axis.plot(sizes, [row['fwd_bwd_ms'] for row in series], label=label, **style)
        memory_axis.plot(sizes, [max(row['peak_mib'], 1e-3) for row in series], **style)
    for axis, title in ((time_axis, 'forward+backward latency (ms)'),
                        (memory_axis, 'peak extra memory, forward+backward (MiB)')):
        axis.set_xscale('log', base=2)
        axis.set_yscale('log')
        axis.set_xlabel('input height = width (solid: ours, dashed: our reference, '
                        'dotted: authors)')
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
    parser.add_argument('--plot', type=Path,
                        help='write a PNG plot here: forward+backward time and peak memory '
                             'against the input size, for ours, our reference and the authors\' '
                             'modules')
    parser.add_argument('--authors', type=Path, metavar='DIR',
                        help='also measure the authors\' own modules found by file name under '
                             'DIR (their repositories: dysample.py, FADE_L2H.py, FADE_H2L.py, '
                             'sapa_base.py, sapa_deform.py; mmcv\'s CARAFEPack when installed)')
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
    if args.authors is not None and not args.authors.is_dir():
        parser.error(f'--authors must be a folder holding the authors\' files, got '
                     f'{str(args.authors)!r} (not a directory)')
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
    authors = {}
    if args.authors is not None:
        authors = {spec.ours: (spec, source)
                   for spec, source in discover_authors_modules(args.authors, names)}
        print(f"  authors' modules under {args.authors}: "
              + (', '.join(f'{name} <- {source}' for name, (_, source) in authors.items())
                 or 'none of ' + ', '.join(sorted({spec.file for spec in AUTHORS_MODULES
                                                    if spec.file}))),
              file=sys.stderr, flush=True)
    rows, notes = [], []
    if args.authors is not None:
        notes = [f"{spec.ours} (authors): {spec.file or spec.package} not found"
                 + (f' under {args.authors}' if spec.file else ' (not installed)')
                 for spec in AUTHORS_MODULES if spec.ours in names and spec.ours not in authors]
    for size in args.sizes:
        for name in names:
            flops = None
            try:
                flops = forward_flops(name, args.batch, args.channels, size, args.scale)
            except (NotImplementedError, RuntimeError):  # an op without a meta kernel
                pass
            paths = [('-', 'auto')]
            label = fast_path_label(name, args.scale, fast_label)
            if label is not None:
                paths = [(label, 'auto')]
                if args.reference_for is None or name in args.reference_for:
                    paths.append(('reference', 'reference'))
            if name in authors:
                paths.append(('authors', 'auto'))
            for label, impl in paths:
                repeats = (args.reference_repeats or args.repeats) if label == 'reference' \
                    else args.repeats
                case = dict(name=name, path=label, impl=impl, size=size, batch=args.batch,
                            channels=args.channels, scale=args.scale, device=args.device,
                            threads=args.threads, repeats=repeats)
                if label == 'authors':
                    spec, source = authors[name]
                    case.update(authors_source=source, authors_class=spec.cls,
                                authors_guided=spec.guided,
                                authors_arguments=spec.arguments(args.channels, args.scale))
                try:
                    row = run_isolated(case) if args.isolation == 'process' else run_case(case)
                except Exception as error:  # noqa: BLE001  only the authors' code may fail here
                    if label != 'authors':
                        raise
                    reason = str(error).strip().splitlines()[-1]
                    notes.append(f"{name} (authors, {authors[name][1]}): not measured here: "
                                 f"{reason}")
                    print(f'  {notes[-1]}', file=sys.stderr, flush=True)
                    continue
                row['flops'] = flops if label != 'authors' else None
                rows.append(row)
                print(f"  {name:>22} {label:>9} {size:>4}: fwd+bwd {row['fwd_bwd_ms']:9.1f} ms, "
                      f"peak extra {row['peak_mib']:8.0f} MiB", file=sys.stderr, flush=True)
    table = markdown_table(rows)
    if notes:
        table += '\n\n' + '\n'.join(f'- {note}' for note in dict.fromkeys(notes))
    print(table)
    if args.output:
        args.output.write_text(table + '\n')
    if args.plot:
        plot(rows, args.plot)


if __name__ == '__main__':
    main()
