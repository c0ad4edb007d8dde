"""mmdynup's C++ CPU kernels (``mmdynup/ops/csrc``), compiled on first use and cached.

The kernels are built with :func:`torch.utils.cpp_extension.load` (a C++17 compiler and
``ninja`` are needed; both come with the development environment, ``tools/setup.sh`` builds them
ahead of time) into ``$MMDYNUP_EXTENSION_CACHE`` (default ``~/.cache/mmdynup/extensions``), in a
folder named by a hash of the sources, the flags, the torch and Python versions and the CPU, so
a changed source, another torch or another machine sharing the home directory never loads a
stale or foreign binary. A build takes about a minute on two cores, once.

``impl='auto'`` uses a kernel on CPU tensors when it builds; where it cannot (no compiler, no
``ninja``, ``MMDYNUP_NATIVE=0``), the op runs its pure-PyTorch fast path and the reason is logged
once. ``impl='native'`` asks for the kernel and raises with that reason instead.

    python -m mmdynup.ops.native        # build now (prints where, and how long it took)
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Optional, Tuple

import torch

_CSRC = Path(__file__).parent / 'csrc'
#: The C++ sources, next to this file (one operator family per file, the Python bindings), and
#: the header they share.
SOURCES = tuple(_CSRC / name for name in ('deformable_attention.cpp', 'point_sampling.cpp',
                                          'bindings.cpp'))
HEADERS = (_CSRC / 'common.h',)
#: Optimisation flags: the compiler may use every instruction of the CPU it builds on (the cache
#: key holds the CPU's flags, so another CPU builds its own).
CFLAGS = ('-O3', '-march=native', '-fopenmp')
LDFLAGS = ('-fopenmp',)


def channels_last_planes(feature: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, C, H, W) -> contiguous (B, H, W, C) in ``dtype``: the planes the kernels read, where a
    pixel's channels are one contiguous row."""
    return feature.to(dtype).permute(0, 2, 3, 1).contiguous()


def extension_cache() -> Path:
    """Where the compiled kernels live (``$MMDYNUP_EXTENSION_CACHE``)."""
    default = Path.home() / '.cache' / 'mmdynup' / 'extensions'
    return Path(os.environ.get('MMDYNUP_EXTENSION_CACHE', default)).expanduser()


def _cpu_signature() -> str:
    """The CPU's model and instruction-set flags (Linux), else the platform's machine name."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        return platform.machine()
    wanted = [line for line in lines if line.startswith(('model name', 'flags'))]
    return '\n'.join(sorted(set(wanted))) or platform.machine()


def build_key() -> str:
    """Hash of everything a binary depends on: sources, flags, torch, Python, CPU."""
    digest = hashlib.sha256()
    for source in (*SOURCES, *HEADERS):
        digest.update(source.read_bytes())
    for part in (*CFLAGS, *LDFLAGS, torch.__version__, sys.version, _cpu_signature()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def native_disabled_reason() -> Optional[str]:
    """Why ``'auto'`` should not even try to build (``MMDYNUP_NATIVE=0``), else None."""
    if os.environ.get('MMDYNUP_NATIVE', '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return 'MMDYNUP_NATIVE=0 is set'
    return None


@functools.lru_cache(maxsize=None)
def _load() -> Tuple[Optional[ModuleType], str]:
    """(module, '') once built and loaded, else (None, why); tried once per process."""
    from mmengine.logging import print_log
    from torch.utils import cpp_extension

    key = build_key()
    name = f'mmdynup_native_{key}'
    build_dir = extension_cache() / name
    fresh = not any(build_dir.glob('*.so'))
    started = time.perf_counter()
    if fresh:
        print_log(f'mmdynup: compiling the C++ CPU kernels into {build_dir} (once, about a minute)',
                  logger='current')
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        module = cpp_extension.load(name=name, sources=[str(source) for source in SOURCES],
                                    extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
                                    build_directory=str(build_dir), verbose=False)
    except Exception as error:  # noqa: BLE001  any build failure falls back, with its reason
        reason = (f'building the C++ CPU kernels in {build_dir} failed: '
                  f'{type(error).__name__}: {str(error).strip()[-600:]}')
        return None, reason
    if fresh:
        print_log(f'mmdynup: C++ CPU kernels built in {time.perf_counter() - started:.0f} s',
                  logger='current')
    return module, ''


@functools.lru_cache(maxsize=None)
def _log_fallback(reason: str) -> None:
    from mmengine.logging import print_log
    print_log(f'mmdynup: C++ CPU kernels unavailable, using the PyTorch fast path ({reason})',
              logger='current')


def native_kernels(required: bool = False) -> Optional[ModuleType]:
    """The compiled kernels, building them on first use; None where they are unavailable.

    Args:
        required: raise (with the reason and the fix) instead of returning None.
    """
    reason = native_disabled_reason()
    module = None
    if reason is None:
        module, reason = _load()
    if module is not None:
        return module
    if required:
        raise RuntimeError(f"impl='native' was requested but {reason}; install a C++ compiler "
                           "and ninja (pip install ninja), unset MMDYNUP_NATIVE, or use "
                           "impl='auto'")
    _log_fallback(reason)
    return None


def main() -> int:
    started = time.perf_counter()
    module = native_kernels(required=True)
    print(f'C++ CPU kernels ready in {extension_cache()} ({module.__name__}, '
          f'{time.perf_counter() - started:.1f} s)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
