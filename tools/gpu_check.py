"""GPU check of the fast upsampling ops: the Triton tests on a real device, then one table per
(size, dtype) of bilinear interpolation, the authors' CUDA ops and ours side by side.

    python tools/gpu_check.py --authors build/authors     # on a CUDA machine, a few minutes
    python tools/gpu_check.py --bundle build/gpu_pythonpath   # here, before going there
    bash tools/gpu_check.sh prepare | run                  # both steps, see that script

What it does on the CUDA machine:

1. prints torch / CUDA / Triton versions and the GPU's name;
2. runs ``tests/ops/test_triton_kernels.py`` (its ``cuda`` cases compile the kernels) and the
   CPU fast-path tests, with pytest in this process (``--skip-tests`` leaves them out);
3. compiles the authors' CUDA ops from ``--authors DIR`` (:mod:`authors_cuda_ops`: mmcv 2.1.0's
   CARAFE kernels, tiny-smart/sapa's similarity / aggregation and deformable kernels); an op
   whose sources or compiler are missing, or that fails to build, is a row marked
   "not measured" with the reason;
4. for every ``--cases`` size (default 1 x 256 x 120 x 120, the DySample paper's Fig. 1 setting,
   and 2 x 256 x 128 x 128; always x2) and ``--dtypes`` (float32, bfloat16) prints a table of
   forward and forward+backward latency (median of ``--repeats`` CUDA-event timings after a
   warm-up) and the peak extra memory of one forward+backward (``max_memory_allocated`` minus
   the memory held before: outputs, saved tensors, gradients, temporaries), for each op:

   * CARAFE reassembly, k=5: ``reassemble`` (Triton) | mmcv's ``carafe``;
   * SAPA similarity, k=5, d=64: ``local_similarity`` (Triton) | sapa's ``qk``;
   * SAPA aggregation, k=5: ``reassemble`` with one group (Triton) | sapa's ``av``;
   * SAPA-deform, P=9, G=4, d=32: ``local_deformable_attention`` at the positions of the same
     offsets | sapa's ``deform_qk``, softmax, ``deform_av``;
   * DySample point sampling, G=4, border: ``point_sample`` | ``F.grid_sample`` (2).

   (2) DySample's code samples with ``F.grid_sample``; it has no CUDA op of its own. The table
   names the autograd node our call produced, so a row shows which path actually ran.

   Targets (issue 16), checked per row of ours: forward+backward faster than the authors' op,
   at most 8x bilinear's, and peak memory at most 1.5x bilinear's. The forward outputs of ours
   and the authors' are compared (max abs difference) where both ran.
5. with ``--sweep``, forward+backward of our ops for every combination of the Triton kernels'
   tile constants (:data:`SWEEP`) on the first case, float32, to choose the shipped values;
6. with ``--upsamplers``, also the whole-upsampler tables of ``tools/benchmark.py`` on CUDA.

The GPU machine needs torch only. The pure-Python packages the ops, the upsamplers and pytest
import (mmengine and its small dependencies, pytest) are copied from this environment by
``--bundle DIR`` and appended to ``sys.path`` (after the machine's own packages) from
``build/gpu_pythonpath`` or ``$MMDYNUP_GPU_PYTHONPATH``. When the full ``import mmdynup`` fails
there (no mmcv / OpenCV), only ``mmdynup.ops``, ``mmdynup.upsamplers`` and ``mmdynup.api`` are
loaded, which is all this check uses. Nothing is installed.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import math
import os
import re
import shutil
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO_ROOT / 'build' / 'gpu_pythonpath'
#: Packages the GPU machine is assumed to have with torch (never bundled).
PROVIDED = {'torch', 'torchgen', 'triton', 'numpy', 'nvidia', 'typing_extensions', 'sympy',
            'mpmath', 'networkx', 'jinja2', 'markupsafe', 'filelock', 'fsspec', 'setuptools',
            'pkg_resources', '_distutils_hack', 'mmdynup', '__editable___mmdynup_0_1_0_finder'}
#: Optional heavy packages the GPU machine need not have; the bundle is made without them, which
#: also proves the check runs without them.
NOT_NEEDED = ('mmcv', 'mmseg', 'mmdet', 'cv2', 'PIL', 'matplotlib', 'scipy', 'tqdm')
#: The issue's sizes: the DySample paper's Fig. 1 setting and the benchmark's larger case.
DEFAULT_CASES = ('1x256x120x120', '2x256x128x128')
DTYPES = ('float32', 'bfloat16')
SCALE = 2
#: Issue 16's targets for every op of ours.
MAX_TIME_VS_BILINEAR = 8.0
MAX_MEMORY_VS_BILINEAR = 1.5
NOT_REQUESTED = 'not requested (--authors DIR)'
#: Whole-upsampler tables for ``--upsamplers`` (batch, input size).
UPSAMPLER_BENCHMARKS = [(1, 120), (2, 128)]


# --- loading mmdynup on a bare GPU machine ------------------------------------------------------

def load_mmdynup_ops(partial: bool = False) -> str:
    """Import mmdynup fully if possible (and not ``partial``), else only its ops, upsamplers
    and api."""
    reason = 'asked for'
    if not partial:
        try:
            importlib.import_module('mmdynup')
            return 'full package'
        except ImportError as error:
            reason = f'{type(error).__name__}: {error}'
    # Submodules that did import (the registry among them) stay: re-running them would register
    # the 'mmdynup' scope twice.
    package = types.ModuleType('mmdynup')
    package.__path__ = [str(REPO_ROOT / 'mmdynup')]
    sys.modules['mmdynup'] = package
    api = importlib.import_module('mmdynup.api')
    importlib.import_module('mmdynup.upsamplers')
    package.build_upsampler, package.list_upsamplers = api.build_upsampler, api.list_upsamplers
    return f'ops + upsamplers only ({reason})'


class Unavailable(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes the :data:`NOT_NEEDED` packages fail to import, as on a bare GPU machine (they are
    still "found", so probes such as ``importlib.util.find_spec`` keep working)."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in NOT_NEEDED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f'{spec.name} is hidden while bundling', name=spec.name)

    def exec_module(self, module):  # never reached: create_module raises
        raise ModuleNotFoundError(module.__name__)


def bundle(target: Path) -> None:
    """Copy the pure-Python packages that the check imports (beyond torch) into ``target``."""
    site_packages = {str(Path(path).resolve()) for path in sys.path if 'site-packages' in path}
    sys.meta_path.insert(0, Unavailable())
    load_mmdynup_ops(partial=True)
    importlib.import_module('pytest')
    importlib.import_module('mmdynup.ops.dispatch')
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name, module in sorted(sys.modules.items()):
        top = name.split('.')[0]
        path = getattr(module, '__file__', None)
        if '.' in name or top in PROVIDED or not path:
            continue
        path = Path(path).resolve()
        if not any(str(path).startswith(site) for site in site_packages):
            continue
        source = path.parent if path.name == '__init__.py' else path
        destination = target / source.name
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy2(source, destination)
        copied.append(source.name)
    size = sum(file.stat().st_size for file in target.rglob('*') if file.is_file())
    print(f'bundled {len(copied)} packages ({size / 2 ** 20:.1f} MiB) into {target}: '
          f'{", ".join(copied)}')


# --- the ops, ours and the authors' ---------------------------------------------------------------

class OpSpec(NamedTuple):
    """One row pair of the table: inputs ``make(batch, channels, height, width, dtype, device)``
    (a dict of leaf tensors), our call and the authors' (or why it is not available)."""
    name: str
    make: Callable
    ours: Callable
    authors_label: str
    authors: object  # Callable, or a str saying why it is not measured


def _leaf(tensor):
    return tensor.detach().requires_grad_()


def _parent_centres(out_h: int, out_w: int, device, dtype):
    """(oH, oW, 2) centre ``(x, y)`` of every output pixel's low-resolution parent."""
    import torch
    rows = torch.div(torch.arange(out_h, device=device), SCALE, rounding_mode='floor') + 0.5
    cols = torch.div(torch.arange(out_w, device=device), SCALE, rounding_mode='floor') + 0.5
    return torch.stack(torch.broadcast_tensors(cols[None, :], rows[:, None]), -1).to(dtype)


def make_reassembly(batch, channels, height, width, dtype, device):
    import torch
    kernels = torch.randn(batch, 1, 25, SCALE * height, SCALE * width, device=device)
    return dict(x=_leaf(torch.randn(batch, channels, height, width, device=device, dtype=dtype)),
                kernels=_leaf(kernels.softmax(2).to(dtype)))


def make_similarity(batch, channels, height, width, dtype, device, dim=64):
    import torch
    return dict(query=_leaf(torch.randn(batch, dim, SCALE * height, SCALE * width,
                                        device=device, dtype=dtype)),
                key=_leaf(torch.randn(batch, dim, height, width, device=device, dtype=dtype)))


def make_aggregation(batch, channels, height, width, dtype, device):
    import torch
    attention = torch.randn(batch, 25, SCALE * height, SCALE * width, device=device)
    return dict(attention=_leaf(attention.softmax(1).to(dtype)),
                value=_leaf(torch.randn(batch, channels, height, width, device=device,
                                        dtype=dtype)))


#: SAPA-deform's defaults (points, groups, query / key channels per group).
DEFORM_POINTS, DEFORM_GROUPS, DEFORM_DIM = 9, 4, 32


def make_deform(batch, channels, height, width, dtype, device):
    import torch
    dim = DEFORM_GROUPS * DEFORM_DIM
    out_h, out_w = SCALE * height, SCALE * width
    offsets = 0.5 * torch.randn(batch, DEFORM_GROUPS * DEFORM_POINTS * 2, out_h, out_w,
                                device=device)
    return dict(query=_leaf(torch.randn(batch, dim, out_h, out_w, device=device, dtype=dtype)),
                key=_leaf(torch.randn(batch, dim, height, width, device=device, dtype=dtype)),
                value=_leaf(torch.randn(batch, channels, height, width, device=device,
                                        dtype=dtype)),
                offsets=_leaf(offsets.to(dtype)))


def deform_positions(offsets):
    """The authors' offsets (B, G*P*2, oH, oW; channel ``(g * P + p) * 2 + {x: 0, y: 1}``, in
    low-resolution pixels from the parent) as our positions (B, G, P, oH, oW, 2), in float32."""
    batch, _, out_h, out_w = offsets.shape
    offsets = offsets.float().view(batch, DEFORM_GROUPS, DEFORM_POINTS, 2, out_h, out_w)
    return offsets.permute(0, 1, 2, 4, 5, 3) + _parent_centres(out_h, out_w, offsets.device,
                                                               offsets.dtype)


def make_point_sampling(batch, channels, height, width, dtype, device, groups=4):
    import torch
    out_h, out_w = SCALE * height, SCALE * width
    positions = (_parent_centres(out_h, out_w, device, torch.float32)
                 + 0.25 * torch.randn(batch, groups, out_h, out_w, 2, device=device))
    return dict(x=_leaf(torch.randn(batch, channels, height, width, device=device, dtype=dtype)),
                positions=_leaf(positions))


def op_specs(authors: Dict[str, object]) -> List[OpSpec]:
    """The table's ops, with the authors' callables (or reasons) from :mod:`authors_cuda_ops`."""
    from mmdynup.ops.deformable_attention import local_deformable_attention
    from mmdynup.ops.local_similarity import local_similarity
    from mmdynup.ops.point_sampling import point_sample, point_sample_reference
    from mmdynup.ops.reassembly import reassemble

    def authors_op(name, call):
        op = authors.get(name, NOT_REQUESTED)
        return op if isinstance(op, str) else (lambda inputs: call(op, inputs))

    def authors_deform(inputs):
        qk, av = authors['deform_qk'], authors['deform_av']
        arguments = (inputs['offsets'], DEFORM_POINTS, SCALE, DEFORM_GROUPS)
        attention = qk(inputs['query'], inputs['key'], *arguments).softmax(2)
        return av(attention, inputs['value'], *arguments)

    reasons = [authors.get(name, NOT_REQUESTED) for name in ('deform_qk', 'deform_av')]
    reasons = [reason for reason in reasons if isinstance(reason, str)]
    deform = reasons[0] if reasons else authors_deform
    return [
        OpSpec('CARAFE reassembly, k=5', make_reassembly,
               lambda inputs: reassemble(inputs['x'], inputs['kernels'], 5, SCALE, impl='triton'),
               'mmcv carafe',
               authors_op('carafe', lambda op, inputs: op(
                   inputs['x'], inputs['kernels'].flatten(1, 2), 5, 1, SCALE))),
        OpSpec('SAPA similarity, k=5, d=64', make_similarity,
               lambda inputs: local_similarity(inputs['query'], inputs['key'], 5, SCALE,
                                               impl='triton'),
               'sapa qk',
               authors_op('sapa_qk', lambda op, inputs: op(inputs['query'], inputs['key'], 5,
                                                           SCALE))),
        OpSpec('SAPA aggregation, k=5', make_aggregation,
               lambda inputs: reassemble(inputs['value'], inputs['attention'].unsqueeze(1), 5,
                                         SCALE, impl='triton'),
               'sapa av',
               authors_op('sapa_av', lambda op, inputs: op(inputs['attention'], inputs['value'],
                                                           5, SCALE))),
        OpSpec(f'SAPA-deform, P={DEFORM_POINTS}, G={DEFORM_GROUPS}, d={DEFORM_DIM}', make_deform,
               lambda inputs: local_deformable_attention(
                   inputs['query'], inputs['key'], inputs['value'],
                   deform_positions(inputs['offsets']), DEFORM_GROUPS, 1.0),
               'sapa deform_qk + softmax + deform_av', deform),
        OpSpec('DySample point sampling, G=4', make_point_sampling,
               lambda inputs: point_sample(inputs['x'], inputs['positions'], 4, 'border'),
               'grid_sample (DySample code)',
               lambda inputs: point_sample_reference(inputs['x'], inputs['positions'], 4,
                                                     'border')),
    ]


# --- measuring ------------------------------------------------------------------------------------

class Measurement(NamedTuple):
    fwd_ms: float
    fwd_bwd_ms: float
    peak_mib: float
    node: str  # the autograd node of the output: which path ran
    output: object  # forward output (for the parity column)


def median_ms(function: Callable[[], None], repeats: int, device) -> float:
    """Median time of ``function`` after one warm-up: CUDA events on CUDA, the wall clock
    elsewhere (the CPU tests)."""
    import torch
    function()
    times = []
    for _ in range(repeats):
        if device.type != 'cuda':
            started = time.perf_counter()
            function()
            times.append(1e3 * (time.perf_counter() - started))
            continue
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def measure(call: Callable, inputs: Dict, repeats: int, device) -> Measurement:
    """Forward, forward+backward and the peak extra memory of ``call(inputs)`` (memory probes
    of ``tools/benchmark.py``: ``max_memory_allocated`` on CUDA, the resident set elsewhere)."""
    import torch
    sys.path.insert(0, str(REPO_ROOT / 'tools'))
    from benchmark import memory_in_use, memory_peak, release_free_memory
    with torch.no_grad():
        output = call(inputs)
    grad = torch.randn_like(output)
    with torch.enable_grad():
        node = type(call(inputs).grad_fn).__name__

    def forward():
        with torch.no_grad():
            call(inputs)

    def forward_backward():
        for tensor in inputs.values():
            tensor.grad = None
        call(inputs).backward(grad)

    forward_backward()  # compiles / warms up outside the memory probe
    release_free_memory(device)
    before = memory_in_use(device)
    forward_backward()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    peak_mib = (memory_peak(device) - before) / 2 ** 20
    return Measurement(median_ms(forward, repeats, device),
                       median_ms(forward_backward, repeats, device), peak_mib, node, output)


def not_measured_reason(error: BaseException) -> str:
    """One line from an op's failure (e.g. an authors' kernel without bfloat16)."""
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0][:120] if text else ""}'


def run_case(specs: List[OpSpec], shape: Tuple[int, int, int, int], dtype_name: str,
             repeats: int, device='cuda') -> List[Dict]:
    """Rows (dicts) of one table: bilinear first, then ours and the authors' per op."""
    import torch
    import torch.nn.functional as F
    dtype = getattr(torch, dtype_name)
    device = torch.device(device)
    torch.manual_seed(0)
    x = _leaf(torch.randn(*shape, device=device, dtype=dtype))
    bilinear = measure(lambda inputs: F.interpolate(inputs['x'], scale_factor=SCALE,
                                                    mode='bilinear', align_corners=False),
                       dict(x=x), repeats, device)
    rows = [dict(op='bilinear interpolation', impl='F.interpolate', result=bilinear)]
    for spec in specs:
        torch.manual_seed(0)
        inputs = spec.make(*shape, dtype, device)
        results = {}
        for label, call in (('ours', spec.ours), (spec.authors_label, spec.authors)):
            if isinstance(call, str):
                results[label] = call
                continue
            try:
                results[label] = measure(call, inputs, repeats, device)
            except Exception as error:  # noqa: BLE001  a failing op is a row, not the end
                results[label] = not_measured_reason(error)
            if device.type == 'cuda':
                torch.cuda.empty_cache()
        ours, theirs = results['ours'], results[spec.authors_label]
        parity = None
        if isinstance(ours, Measurement) and isinstance(theirs, Measurement):
            parity = (ours.output.float() - theirs.output.float()).abs().max().item()
        rows.append(dict(op=spec.name, impl='ours', result=ours, parity=parity,
                         authors=theirs))
        rows.append(dict(op=spec.name, impl=spec.authors_label, result=theirs))
    return rows


#: ``--sweep``: alternatives of the Triton kernels' tile constants, every combination timed.
SWEEP = dict(TILE_ELEMENTS=(2048, 4096, 8192), CHANNELS_PER_PROGRAM=(16, 64),
             NUM_WARPS=(4, 8))


def sweep(specs: List[OpSpec], shape: Tuple[int, int, int, int], repeats: int,
          device='cuda') -> str:
    """Forward+backward ms of every op of ours (float32) for each combination of :data:`SWEEP`
    (module constants of :mod:`mmdynup.ops.triton_kernels`, restored afterwards), as a markdown
    table; the shipped values are marked."""
    import itertools

    import torch
    device = torch.device(device)
    kernels = importlib.import_module('mmdynup.ops.triton_kernels')
    shipped = {name: getattr(kernels, name) for name in SWEEP}
    lines = ['| ' + ' | '.join(SWEEP) + ' | ' + ' | '.join(spec.name for spec in specs) + ' |',
             '|' + '---:|' * (len(SWEEP) + len(specs))]
    try:
        for values in itertools.product(*SWEEP.values()):
            for name, value in zip(SWEEP, values):
                setattr(kernels, name, value)
            cells = []
            for spec in specs:
                torch.manual_seed(0)
                inputs = spec.make(*shape, torch.float32, device)
                try:
                    cells.append(f'{measure(spec.ours, inputs, repeats, device).fwd_bwd_ms:.3f}')
                except Exception as error:  # noqa: BLE001  a failing setting is a cell
                    cells.append(not_measured_reason(error))
            marks = [f'**{value}**' if value == shipped[name] else str(value)
                     for name, value in zip(SWEEP, values)]
            lines.append('| ' + ' | '.join(marks + cells) + ' |')
    finally:
        for name, value in shipped.items():
            setattr(kernels, name, value)
    return '\n'.join(lines)


# --- the table ------------------------------------------------------------------------------------

def ratio(numerator: float, denominator: float) -> Optional[float]:
    """numerator / denominator; None where the denominator is 0 (e.g. a case too small to
    raise the CPU's resident set)."""
    return numerator / denominator if denominator > 0 else None


def ratio_text(value: Optional[float]) -> str:
    if value is None or math.isnan(value):
        return '-'
    return f'{value:.2f}x' if value < 10 else f'{value:.0f}x'


def target_text(rows: List[Dict], row: Dict) -> str:
    """Which of the issue's targets an op of ours meets (``-`` for other rows)."""
    result = row['result']
    if row['impl'] != 'ours':
        return '-'
    if not isinstance(result, Measurement):
        return 'not measured'
    bilinear = rows[0]['result']
    checks = []
    authors = row.get('authors')
    if isinstance(authors, Measurement):
        checks.append(('faster than authors\'', result.fwd_bwd_ms < authors.fwd_bwd_ms))
    checks.append((f'<= {MAX_TIME_VS_BILINEAR:g}x bilinear time',
                   result.fwd_bwd_ms <= MAX_TIME_VS_BILINEAR * bilinear.fwd_bwd_ms))
    checks.append((f'<= {MAX_MEMORY_VS_BILINEAR:g}x bilinear memory',
                   result.peak_mib <= MAX_MEMORY_VS_BILINEAR * bilinear.peak_mib))
    missed = [name for name, met in checks if not met]
    return 'all met' if not missed else 'missed: ' + ', '.join(missed)


def format_table(rows: List[Dict], title: str) -> str:
    """A markdown table of :func:`run_case` rows (the first is bilinear interpolation)."""
    header = ('| op | implementation | fwd ms | fwd+bwd ms | fwd+bwd / bilinear | '
              'fwd+bwd / authors\' | peak extra MiB | memory / bilinear | max abs diff vs '
              'authors\' | autograd node | targets |')
    lines = [f'**{title}**', '', header, '|' + '---|' * 2 + '---:|' * 7 + '---|---|']
    bilinear = rows[0]['result']
    for row in rows:
        result = row['result']
        if not isinstance(result, Measurement):
            lines.append(f"| {row['op']} | {row['impl']} | not measured: {result} |"
                         + ' |' * 8)
            continue
        authors = row.get('authors')
        versus_authors = (ratio(result.fwd_bwd_ms, authors.fwd_bwd_ms)
                          if isinstance(authors, Measurement) else None)
        parity = row.get('parity')
        lines.append(
            f"| {row['op']} | {row['impl']} | {result.fwd_ms:.3f} | {result.fwd_bwd_ms:.3f} | "
            f'{ratio_text(ratio(result.fwd_bwd_ms, bilinear.fwd_bwd_ms))} | '
            f'{ratio_text(versus_authors)} | {result.peak_mib:.0f} | '
            f'{ratio_text(ratio(result.peak_mib, bilinear.peak_mib))} | '
            f"{'-' if parity is None else f'{parity:.2g}'} | {result.node} | "
            f'{target_text(rows, row)} |')
    return '\n'.join(lines)


def parse_case(text: str) -> Tuple[int, int, int, int]:
    """``'BxCxHxW'`` -> (B, C, H, W) (argparse type)."""
    match = re.fullmatch(r'(\d+)x(\d+)x(\d+)x(\d+)', text.strip())
    if not match or 0 in (shape := tuple(int(part) for part in match.groups())):
        raise argparse.ArgumentTypeError(
            f'--cases expects BxCxHxW with positive integers (the input; the output is x2), '
            f'e.g. 1x256x120x120, got {text!r}')
    return shape


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', type=Path, nargs='?', const=DEFAULT_BUNDLE,
                        help='copy the needed pure-Python packages here and exit')
    parser.add_argument('--authors', type=Path,
                        help='folder prepared by tools/authors_cuda_ops.py prepare (the '
                             'authors\' sources); without it their rows are not measured')
    parser.add_argument('--cases', type=parse_case, nargs='+',
                        default=[parse_case(case) for case in DEFAULT_CASES],
                        help='input sizes BxCxHxW, upsampled x2 (default: %(default)s)')
    parser.add_argument('--dtypes', nargs='+', choices=DTYPES, default=list(DTYPES))
    parser.add_argument('--repeats', type=int, default=20, help='timed runs per case')
    parser.add_argument('--skip-tests', action='store_true', help='no pytest run first')
    parser.add_argument('--upsamplers', action='store_true',
                        help='also the whole-upsampler tables of tools/benchmark.py')
    parser.add_argument('--sweep', action='store_true',
                        help="also time the Triton kernels' tile constants (SWEEP) on the first "
                             'case, float32, forward+backward')
    parser.add_argument('--output', type=Path, help='write the tables (markdown) here too')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f'--repeats must be >= 1, got {args.repeats}')
    return args


def check(args) -> int:
    """The whole check; returns the exit status (1 without a CUDA device or on test failure)."""
    import torch
    bundle_dir = Path(os.environ.get('MMDYNUP_GPU_PYTHONPATH', DEFAULT_BUNDLE))
    if bundle_dir.is_dir():
        sys.path.append(str(bundle_dir))  # after the machine's own packages
    if not torch.cuda.is_available():
        print('no CUDA device: tools/gpu_check.py measures on a GPU (torch.cuda.is_available() '
              'is False here); run it on a CUDA machine (tools/gpu_check.sh run)')
        return 1
    loaded = load_mmdynup_ops()
    from mmdynup.ops.dispatch import triton_available
    triton_version = (importlib.import_module('triton').__version__ if triton_available()
                      else 'not importable (Triton tests skip; impl="triton" rows fail)')
    print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
          f'{torch.cuda.get_device_name()}, triton {triton_version}; mmdynup: {loaded}',
          flush=True)

    status = 0
    started = time.time()
    if not args.skip_tests:
        try:
            import pytest
        except ImportError:
            print('pytest is not importable (bundle it with --bundle): tests skipped')
            status = 1
        else:
            status = int(pytest.main(['-q', '-p', 'no:cacheprovider', '-x', '-rs',
                                      'tests/ops/test_triton_kernels.py',
                                      'tests/ops/test_reassembly_fast.py',
                                      'tests/ops/test_similarity_fast.py']))
            print(f'tests: exit status {status} in {time.time() - started:.0f} s', flush=True)

    authors: Dict[str, object] = {}
    if args.authors:
        sys.path.insert(0, str(REPO_ROOT / 'tools'))
        authors_cuda_ops = importlib.import_module('authors_cuda_ops')
        build_started = time.time()
        authors = authors_cuda_ops.build(args.authors)
        for op, result in authors.items():
            print(f"authors' {op}: {'built' if not isinstance(result, str) else result}")
        print(f"authors' ops: {time.time() - build_started:.0f} s", flush=True)
    specs = op_specs(authors)
    tables = []
    for shape in args.cases:
        for dtype_name in args.dtypes:
            title = (f"{'x'.join(map(str, shape))} -> x{SCALE}, {dtype_name}, "
                     f'{torch.cuda.get_device_name()}')
            tables.append(format_table(run_case(specs, shape, dtype_name, args.repeats), title))
            print(tables[-1] + '\n', flush=True)
    if args.sweep:
        tables.append(f"**Tile constants, {'x'.join(map(str, args.cases[0]))} -> x{SCALE}, "
                      f'float32, fwd+bwd ms** (shipped values in bold)\n\n'
                      + sweep(specs, args.cases[0], args.repeats))
        print(tables[-1] + '\n', flush=True)
    if args.output:
        args.output.write_text('\n\n'.join(tables) + '\n')

    if args.upsamplers:
        sys.path.insert(0, str(REPO_ROOT / 'tools'))
        benchmark = importlib.import_module('benchmark')
        for batch, size in UPSAMPLER_BENCHMARKS:
            benchmark.main(['--device', 'cuda', '--batch', str(batch), '--sizes', str(size),
                            '--repeats', str(args.repeats)])
            print(flush=True)
    print(f'total {time.time() - started:.0f} s')
    return status


def main(argv=None) -> None:
    args = parse_args(argv)
    os.chdir(REPO_ROOT)
    if args.bundle:
        bundle(args.bundle)
        return
    sys.exit(check(args))


if __name__ == '__main__':
    main()
