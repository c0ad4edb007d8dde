"""The authors' CUDA ops, compiled on the GPU machine from their own sources, for
``tools/gpu_check.py`` to time beside ours. Nothing of theirs is shipped with mmdynup: the
sources are copied into an ignored folder (``build/authors``) from where the user has them.

    python tools/authors_cuda_ops.py prepare build/authors --sapa-repo PATH   # here (registry)
    python tools/authors_cuda_ops.py build build/authors                      # on the GPU machine

``prepare`` puts into the folder:

* ``mmcv-2.1.0.tar.gz`` - mmcv's source distribution (``pip download mmcv==2.1.0 --no-deps
  --no-binary :all:``, or ``--mmcv-sdist FILE``); only its CARAFE files are compiled
  (``mmcv/ops/csrc/pytorch/cuda/carafe_cuda.cu`` with the headers of ``csrc/common``), behind a
  ten-line binding of ours that exposes the two launchers;
* ``sapa/`` - tiny-smart/sapa (a checkout, or a bare git directory whose ``HEAD`` is exported):
  ``sapa/sapa/src`` (``qk_ext``, ``av_ext``: SAPA's similarity and aggregation) and
  ``deformsapa/deformsapa/src`` (``dqk``, ``dav``: SAPA-deform's), built as their ``setup.py``
  lists them, and their ``sapa_func.py`` / ``deform_func.py`` autograd Functions.

``build`` compiles each extension with ``torch.utils.cpp_extension.load`` (ninja, nvcc; for the
local GPU's architecture only, all in parallel) and returns, per op, its callable or the reason it
is not available (no sources, no compiler, a build error with the log's tail), so the caller
marks that row as not measured instead of failing. Torch builds without the old ``THC`` headers
get a one-line ``THC/THCAtomics.cuh`` that includes ``ATen/cuda/Atomic.cuh``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable, Dict, List, Union

MMCV_VERSION = '2.1.0'
MMCV_SDIST = f'mmcv-{MMCV_VERSION}.tar.gz'
#: Extension name -> (sources relative to the prepared folder, the authors' Python module that
#: imports it, the attribute of that module that is the op).
SAPA_EXTENSIONS = {
    'qk_ext': (['sapa/sapa/sapa/src/cuda/qk_cuda.cpp', 'sapa/sapa/sapa/src/cuda/qk_cuda_kernel.cu',
                'sapa/sapa/sapa/src/qk_ext.cpp'], 'sapa/sapa/sapa/sapa_func.py', 'qk'),
    'av_ext': (['sapa/sapa/sapa/src/cuda/av_cuda.cpp', 'sapa/sapa/sapa/src/cuda/av_cuda_kernel.cu',
                'sapa/sapa/sapa/src/av_ext.cpp'], 'sapa/sapa/sapa/sapa_func.py', 'av'),
    'dqk': (['sapa/deformsapa/deformsapa/src/cuda/deform_qk_cuda.cpp',
             'sapa/deformsapa/deformsapa/src/cuda/deform_qk_cuda_kernel.cu',
             'sapa/deformsapa/deformsapa/src/deform_qk.cpp'],
            'sapa/deformsapa/deformsapa/deform_func.py', 'deform_qk'),
    'dav': (['sapa/deformsapa/deformsapa/src/cuda/deform_av_cuda.cpp',
             'sapa/deformsapa/deformsapa/src/cuda/deform_av_cuda_kernel.cu',
             'sapa/deformsapa/deformsapa/src/deform_av.cpp'],
            'sapa/deformsapa/deformsapa/deform_func.py', 'deform_av'),
}
MMCV_CARAFE_SOURCE = 'mmcv/ops/csrc/pytorch/cuda/carafe_cuda.cu'
MMCV_INCLUDES = ('mmcv/ops/csrc/common', 'mmcv/ops/csrc/common/cuda')
#: Our binding of mmcv's two CARAFE launchers (declared as in ``carafe_cuda.cu``).
CARAFE_BINDING = """\
#include <torch/extension.h>

void CARAFEForwardCUDAKernelLauncher(const at::Tensor features, const at::Tensor masks,
    at::Tensor rfeatures, at::Tensor routput, at::Tensor rmasks, at::Tensor output,
    const int kernel_size, const int group_size, const int scale_factor);
void CARAFEBackwardCUDAKernelLauncher(const at::Tensor top_grad, const at::Tensor rfeatures,
    const at::Tensor masks, at::Tensor rtop_grad, at::Tensor rbottom_grad_hs,
    at::Tensor rbottom_grad, at::Tensor rmask_grad, at::Tensor bottom_grad,
    at::Tensor mask_grad, const int kernel_size, const int group_size, const int scale_factor);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &CARAFEForwardCUDAKernelLauncher, "mmcv CARAFE forward");
  m.def("backward", &CARAFEBackwardCUDAKernelLauncher, "mmcv CARAFE backward");
}
"""
THC_SHIM = '#pragma once\n#include <ATen/cuda/Atomic.cuh>\n'

#: What :func:`build` returns per op: the op, or why it is not available.
Op = Union[Callable, str]


# --- prepare (this machine, registry access) ----------------------------------------------------

def prepare(folder: Path, sapa_repo: Path = None, mmcv_sdist: Path = None) -> List[str]:
    """Put the authors' sources into ``folder``; returns what was done, one line each."""
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    target = folder / MMCV_SDIST
    if mmcv_sdist is not None:
        shutil.copy2(mmcv_sdist, target)
        done.append(f'copied {mmcv_sdist} -> {target}')
    elif not target.is_file():
        subprocess.run([sys.executable, '-m', 'pip', 'download', f'mmcv=={MMCV_VERSION}',
                        '--no-deps', '--no-binary', ':all:', '--disable-pip-version-check',
                        '-d', str(folder)], check=True)
        done.append(f'downloaded {target}')
    else:
        done.append(f'kept {target}')
    if sapa_repo is not None:
        sapa_repo = Path(sapa_repo)
        destination = folder / 'sapa'
        if destination.exists():
            shutil.rmtree(destination)
        if (sapa_repo / 'HEAD').is_file() and (sapa_repo / 'objects').is_dir():  # bare git dir
            destination.mkdir()
            archive = subprocess.run(['git', '--git-dir', str(sapa_repo), 'archive', 'HEAD'],
                                     check=True, capture_output=True).stdout
            subprocess.run(['tar', '-x', '-C', str(destination)], input=archive, check=True)
        elif sapa_repo.is_dir():
            shutil.copytree(sapa_repo, destination, ignore=shutil.ignore_patterns('.git'))
        else:
            raise FileNotFoundError(f'--sapa-repo {sapa_repo} is neither a checkout of '
                                    f'tiny-smart/sapa nor its bare git directory')
        done.append(f'copied tiny-smart/sapa {sapa_repo} -> {destination}')
    missing = missing_sources(folder)
    done.append('all sources present' if not missing else
                'missing: ' + ', '.join(missing) + ' (pass --sapa-repo)')
    return done


def missing_sources(folder: Path) -> List[str]:
    """Source files :func:`build` needs that ``folder`` lacks."""
    needed = [MMCV_SDIST] + sorted({source for sources, module, _ in SAPA_EXTENSIONS.values()
                                    for source in (*sources, module)})
    return [name for name in needed if not (folder / name).is_file()]


# --- build (GPU machine) ------------------------------------------------------------------------

def _mmcv_sources(folder: Path, work: Path) -> Path:
    """mmcv's source tree, extracted once into ``work``."""
    tree = work / f'mmcv-{MMCV_VERSION}'
    if not (tree / MMCV_CARAFE_SOURCE).is_file():
        with tarfile.open(folder / MMCV_SDIST) as archive:
            members = [member for member in archive.getmembers()
                       if '/mmcv/ops/csrc/' in member.name]
            archive.extractall(work, members=members, filter='data')
    return tree


def _thc_shim(work: Path) -> List[str]:
    """An include folder with ``THC/THCAtomics.cuh`` when torch no longer ships it."""
    from torch.utils.cpp_extension import include_paths
    if any((Path(path) / 'THC' / 'THCAtomics.cuh').is_file() for path in include_paths()):
        return []
    shim = work / 'thc_shim'
    (shim / 'THC').mkdir(parents=True, exist_ok=True)
    (shim / 'THC' / 'THCAtomics.cuh').write_text(THC_SHIM)
    return [str(shim)]


def extension_specs(folder: Path, work: Path, extensions) -> Dict[str, Dict]:
    """Keyword arguments of ``torch.utils.cpp_extension.load`` for the named extensions
    (``'mmcv_carafe'`` and keys of :data:`SAPA_EXTENSIONS`)."""
    shim = _thc_shim(work)
    specs = {}
    if 'mmcv_carafe' in extensions:
        tree = _mmcv_sources(folder, work)
        binding = work / 'mmcv_carafe_binding.cpp'
        binding.write_text(CARAFE_BINDING)
        specs['mmcv_carafe'] = dict(
            sources=[str(binding), str(tree / MMCV_CARAFE_SOURCE)],
            extra_include_paths=[str(tree / path) for path in MMCV_INCLUDES] + shim)
    for name in extensions:
        if name not in SAPA_EXTENSIONS:
            continue
        sources = SAPA_EXTENSIONS[name][0]
        specs[name] = dict(sources=[str(folder / source) for source in sources],
                           extra_include_paths=shim, extra_cflags=['-DWITH_CUDA'],
                           extra_cuda_cflags=['-DWITH_CUDA'])
    for name, spec in specs.items():
        spec.update(name=name, build_directory=str(work / name))
        Path(spec['build_directory']).mkdir(parents=True, exist_ok=True)
    return specs


def _compile(spec: Dict) -> str:
    """Build one extension (in a worker process); returns '' or the error's tail."""
    from torch.utils.cpp_extension import load
    try:
        load(**spec, verbose=False)
    except Exception as error:  # noqa: BLE001  a failed build marks the row, never aborts
        return f'{type(error).__name__}: {str(error)[-1500:]}'
    return ''


def build(folder: Path, work: Path = None) -> Dict[str, Op]:
    """Compile the authors' ops from ``folder`` (see :func:`prepare`) and load them.

    Returns ``{'carafe': op | reason, 'sapa_qk': ..., 'sapa_av': ..., 'deform_qk': ...,
    'deform_av': ...}``; an op has the authors' signature (mmcv's ``carafe(features, masks,
    kernel_size, group_size, scale_factor)``, the SAPA functions as in their ``*_func.py``).
    """
    import torch
    names = {'mmcv_carafe': 'carafe', 'qk_ext': 'sapa_qk', 'av_ext': 'sapa_av',
             'dqk': 'deform_qk', 'dav': 'deform_av'}
    folder = Path(folder)
    if not torch.cuda.is_available():
        return {op: 'no CUDA device' for op in names.values()}
    if not folder.is_dir():
        return {op: f'no authors\' sources ({folder} does not exist; see '
                    f'tools/authors_cuda_ops.py prepare)' for op in names.values()}
    from torch.utils.cpp_extension import CUDA_HOME
    if CUDA_HOME is None or shutil.which('nvcc', path=os.path.join(CUDA_HOME, 'bin')) is None:
        return {op: 'no CUDA compiler (nvcc) for torch.utils.cpp_extension' for op in
                names.values()}
    missing = set(missing_sources(folder))
    work = Path(work or folder / 'build')
    work.mkdir(parents=True, exist_ok=True)
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault('TORCH_CUDA_ARCH_LIST', f'{major}.{minor}')
    results: Dict[str, Op] = {}
    present = []
    for extension, op in names.items():
        sources = ([MMCV_SDIST] if extension == 'mmcv_carafe'
                   else [*SAPA_EXTENSIONS[extension][0], SAPA_EXTENSIONS[extension][1]])
        absent = [source for source in sources if source in missing]
        if absent:
            results[op] = f'no authors\' sources: {", ".join(absent)} missing in {folder}'
        else:
            present.append(extension)
    try:
        specs = extension_specs(folder, work, present)
    except (OSError, tarfile.TarError) as error:
        results['carafe'] = f'mmcv sources unreadable: {error}'
        specs = extension_specs(folder, work, [name for name in present if name != 'mmcv_carafe'])
    # Spawned workers: the parent has initialised CUDA; the builds run side by side.
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(max(1, len(specs)), mp_context=context) as pool:
        errors = dict(zip(specs, pool.map(_compile, specs.values())))
    for extension, error in errors.items():
        op = names[extension]
        if error:
            results[op] = f'build failed: {error}'
            continue
        from torch.utils.cpp_extension import load
        module = load(**specs[extension], verbose=False)  # built: only loads
        sys.modules[extension] = module  # the authors' *_func.py import it by this name
        results[op] = module
    for extension, (_, python_file, attribute) in SAPA_EXTENSIONS.items():
        op = names[extension]
        if not isinstance(results.get(op), str):
            results[op] = _authors_function(folder / python_file, attribute, op)
    if not isinstance(results.get('carafe'), str):
        results['carafe'] = carafe_function(results['carafe'])
    return results


def _authors_function(path: Path, attribute: str, op: str) -> Op:
    """``attribute`` of the authors' Python module at ``path`` (it imports the extensions)."""
    spec = importlib.util.spec_from_file_location(f'authors_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:  # its companion extension did not build
        return f'{path.name} does not import: {error}'
    return getattr(module, attribute)


def carafe_function(extension) -> Callable:
    """mmcv's ``carafe(features, masks, kernel_size, group_size, scale_factor)`` on the compiled
    launchers, with the buffers mmcv's ``CARAFEFunction`` hands them."""
    import torch

    class CARAFE(torch.autograd.Function):

        @staticmethod
        def forward(ctx, features, masks, kernel_size, group_size, scale_factor):
            batch, channels, height, width = features.shape
            output = features.new_zeros(batch, channels, height * scale_factor,
                                        width * scale_factor)
            rfeatures = torch.zeros_like(features)
            extension.forward(features, masks, rfeatures, torch.zeros_like(output),
                              torch.zeros_like(masks), output, kernel_size, group_size,
                              scale_factor)
            ctx.save_for_backward(features, masks, rfeatures)
            ctx.arguments = kernel_size, group_size, scale_factor
            return output

        @staticmethod
        def backward(ctx, grad_output):
            features, masks, rfeatures = ctx.saved_tensors
            grad_output = grad_output.contiguous()
            grad_features, grad_masks = torch.zeros_like(features), torch.zeros_like(masks)
            extension.backward(grad_output, rfeatures, masks, torch.zeros_like(grad_output),
                               torch.zeros_like(grad_output), torch.zeros_like(features),
                               torch.zeros_like(masks), grad_features, grad_masks,
                               *ctx.arguments)
            return grad_features, grad_masks, None, None, None

    return CARAFE.apply


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    prepare_parser = commands.add_parser('prepare', help='copy the sources here (registry)')
    prepare_parser.add_argument('folder', type=Path)
    prepare_parser.add_argument('--sapa-repo', type=Path,
                                help='tiny-smart/sapa: a checkout or its bare git directory')
    prepare_parser.add_argument('--mmcv-sdist', type=Path,
                                help=f'{MMCV_SDIST} already downloaded (else pip download)')
    build_parser = commands.add_parser('build', help='compile and load (CUDA machine)')
    build_parser.add_argument('folder', type=Path)
    args = parser.parse_args(argv)
    if args.command == 'prepare':
        for line in prepare(args.folder, args.sapa_repo, args.mmcv_sdist):
            print(line)
        return 0
    results = build(args.folder)
    for op, result in results.items():
        print(f'{op}: {"built" if not isinstance(result, str) else result}')
    return 0 if not any(isinstance(result, str) for result in results.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
