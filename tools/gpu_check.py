"""GPU check of the fast upsampling ops: the Triton tests on a real device, then a timing table.

    python tools/gpu_check.py                    # on a CUDA machine, about 3 min
    python tools/gpu_check.py --bundle build/gpu_pythonpath   # here, before going there

What it does on the CUDA machine:

1. prints torch / CUDA / Triton versions (without Triton the Triton tests are skipped and the
   timings show the tiled PyTorch path, which also runs on CUDA);
2. runs ``tests/ops/test_triton_kernels.py`` (its ``cuda`` cases compile the kernels) and the
   CPU fast-path tests, with pytest in this process;
3. prints ``tools/benchmark.py`` tables on CUDA: the papers' setting (1 x 256 x 120 x 120, x2)
   and 2 x 256 x 64 x 64 / 128 x 128, x2, every upsampler next to bilinear interpolation, on the
   fast (Triton) and the reference path.

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
import os
import shutil
import sys
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO_ROOT / 'build' / 'gpu_pythonpath'
#: Packages the GPU machine is assumed to have with torch (never bundled).
PROVIDED = {'torch', 'torchgen', 'triton', 'numpy', 'nvidia', 'typing_extensions', 'sympy',
            'mpmath', 'networkx', 'jinja2', 'markupsafe', 'filelock', 'fsspec', 'setuptools',
            'pkg_resources', '_distutils_hack', 'mmdynup', '__editable___mmdynup_0_1_0_finder'}
#: Optional heavy packages the GPU machine need not have; the bundle is made without them, which
#: also proves the check runs without them.
NOT_NEEDED = ('mmcv', 'mmseg', 'mmdet', 'cv2', 'PIL', 'matplotlib', 'scipy', 'tqdm')
#: Paper setting and the issue's sizes: (batch, input size, upsamplers).
BENCHMARKS = [
    (1, 120, None),
    (2, 64, None),
    (2, 128, None),
]


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


def check(args) -> int:
    import torch
    bundle_dir = Path(os.environ.get('MMDYNUP_GPU_PYTHONPATH', DEFAULT_BUNDLE))
    if bundle_dir.is_dir():
        sys.path.append(str(bundle_dir))  # after the machine's own packages
    if not torch.cuda.is_available():
        print('no CUDA device: nothing to check here')
        return 1
    loaded = load_mmdynup_ops()
    from mmdynup.ops.dispatch import triton_available
    triton_version = (importlib.import_module('triton').__version__ if triton_available()
                      else 'not importable (Triton tests skip; CUDA timings use the tiled path)')
    print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
          f'{torch.cuda.get_device_name()}, triton {triton_version}; mmdynup: {loaded}',
          flush=True)

    status = 0
    started = time.time()
    try:
        import pytest
    except ImportError:
        print('pytest is not importable (bundle it with --bundle): tests skipped')
        status = 1
    else:
        status = pytest.main(['-q', '-p', 'no:cacheprovider', '-x', '-rs',
                              'tests/ops/test_triton_kernels.py',
                              'tests/ops/test_reassembly_fast.py',
                              'tests/ops/test_similarity_fast.py'])
        print(f'tests: exit status {int(status)} in {time.time() - started:.0f} s', flush=True)

    sys.path.insert(0, str(REPO_ROOT / 'tools'))
    benchmark = importlib.import_module('benchmark')
    for batch, size, names in BENCHMARKS:
        arguments = ['--device', 'cuda', '--batch', str(batch), '--sizes', str(size),
                     '--repeats', str(args.repeats)]
        if names:
            arguments += ['--upsamplers', *names]
        benchmark.main(arguments)
        print(flush=True)
    print(f'total {time.time() - started:.0f} s')
    return int(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', type=Path, nargs='?', const=DEFAULT_BUNDLE,
                        help='copy the needed pure-Python packages here and exit')
    parser.add_argument('--repeats', type=int, default=20, help='timed runs per case')
    args = parser.parse_args()
    os.chdir(REPO_ROOT)
    if args.bundle:
        bundle(args.bundle)
        return
    sys.exit(check(args))


if __name__ == '__main__':
    main()
