"""Which implementation the upsampling ops run: the one switch between fast paths and the plain
PyTorch references.

Implementations (every op in :mod:`mmdynup.ops` that has fast paths accepts these names):

* ``'reference'`` - the plain PyTorch specification (``*_reference``): short, differentiable by
  autograd, traceable, but it materialises the k*k unfolded windows.
* ``'tiled'`` - pure PyTorch, memory-lean: low-resolution rows are processed a few at a time as
  small batched matrix products, forward and backward (custom autograd Functions that recompute
  the windows in backward). Any device; the default on CPU.
* ``'triton'`` - Triton GPU kernels (:mod:`mmdynup.ops.triton_kernels`); the default on CUDA when
  ``triton`` imports. On CPU tensors it runs only under ``TRITON_INTERPRET=1`` (tests).
* ``'native'`` - C++ CPU kernels (:mod:`mmdynup.ops.native`, compiled on first use), for the ops
  that have one (local deformable attention, point sampling); on other ops and on other devices
  it means ``'tiled'``.
* ``'auto'`` - the default: ``'reference'`` while exporting or compiling (ONNX export,
  ``torch.jit`` tracing, ``torch.compile``: plain ops that every exporter understands; the
  compiler fuses them itself), else ``'triton'`` for CUDA tensors when Triton is available, else
  ``'native'`` for CPU tensors of an op with a C++ kernel when the kernels build, else
  ``'tiled'``.

Deterministic mode (``torch.use_deterministic_algorithms(True)``) needs no switch here: point
sampling, whose reference backward (``grid_sample``'s) has no deterministic CUDA kernel, picks
its own deterministic backward in that mode (:func:`mmdynup.ops.point_sampling.sampling_backward`,
also when ``'auto'`` would mean the reference under ``torch.compile``).

Selection, innermost first: the ``impl`` argument of an op call, then the innermost active
:func:`use_implementation` block (scoped per thread and per asyncio task via
:mod:`contextvars`), then ``'auto'``. There is deliberately no process-wide setter. Under
``torch.compile`` / ``torch.export`` blocks are not consulted (dynamo cannot read context
variables): only an explicit ``impl`` argument replaces the reference there.

Example:
    >>> import torch
    >>> from mmdynup.ops.reassembly import reassemble
    >>> x, kernels = torch.randn(1, 4, 3, 3), torch.rand(1, 1, 9, 6, 6)
    >>> with use_implementation('reference'):
    ...     slow = reassemble(x, kernels, 3, 2)
    >>> torch.allclose(slow, reassemble(x, kernels, 3, 2), atol=1e-6)
    True
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
from types import ModuleType
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

from ..compat import get_autocast_dtype, is_autocast_enabled, is_compiling

#: Names accepted by ``impl`` arguments and :func:`use_implementation`.
IMPLEMENTATIONS = ('auto', 'reference', 'tiled', 'triton', 'native')

_ACTIVE_IMPLEMENTATION: contextvars.ContextVar[str] = contextvars.ContextVar(
    'mmdynup_ops_implementation', default='auto')


def check_implementation(impl: str) -> str:
    """Return ``impl`` if it names an implementation, else raise naming the accepted ones."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'impl must be one of {IMPLEMENTATIONS}, got {impl!r}')
    return impl


@contextlib.contextmanager
def use_implementation(impl: str) -> Iterator[None]:
    """Run the ops inside the block with ``impl`` unless a call names its own ``impl``.

    Blocks nest; leaving a block restores the enclosing choice (also after an exception).
    """
    token = _ACTIVE_IMPLEMENTATION.set(check_implementation(impl))
    try:
        yield
    finally:
        _ACTIVE_IMPLEMENTATION.reset(token)


def active_implementation() -> str:
    """The implementation chosen by the innermost :func:`use_implementation` block (``'auto'``
    outside any)."""
    return _ACTIVE_IMPLEMENTATION.get()


def is_exporting() -> bool:
    """True while ``torch.compile`` / ``torch.export`` (dynamo), ``torch.jit`` tracing or
    scripting, or ONNX export runs."""
    if is_compiling():
        return True
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    return torch.onnx.is_in_onnx_export()


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether ``triton`` imports (probed once; a broken install counts as unavailable)."""
    try:
        importlib.import_module('triton')
    except Exception:  # noqa: BLE001  any import failure means "no Triton", never a crash
        return False
    return True


def triton_kernels() -> ModuleType:
    """:mod:`mmdynup.ops.triton_kernels`, imported on first use (it imports ``triton``)."""
    return importlib.import_module('mmdynup.ops.triton_kernels')


def resolve_implementation(impl: Optional[str], *tensors: Tensor, native: bool = False) -> str:
    """The concrete implementation (``'reference'``, ``'tiled'``, ``'triton'`` or ``'native'``)
    for a call.

    Args:
        impl: the call's ``impl`` argument, or None to use the active :func:`use_implementation`
            choice.
        tensors: the call's tensor inputs (their device decides ``'auto'``).
        native: whether the op has a C++ CPU kernel; without one ``'native'`` resolves to
            ``'tiled'``, and so it does for tensors that are not all on the CPU.
    """
    if impl is not None:
        check_implementation(impl)
    if is_compiling():
        # Dynamo cannot read context variables, and graphs should hold plain ops: only an
        # explicit ``impl`` overrides the reference here.
        chosen = 'reference' if impl in (None, 'auto') else impl
    else:
        chosen = active_implementation() if impl is None else impl
    on_cpu = all(tensor.device.type == 'cpu' for tensor in tensors)
    if chosen == 'native':
        return 'native' if native and on_cpu else 'tiled'
    if chosen != 'auto':
        if chosen == 'triton' and not triton_available():
            raise RuntimeError("impl='triton' was requested but triton does not import; "
                               "install triton or use impl='auto'")
        return chosen
    if is_exporting():
        return 'reference'
    if all(tensor.is_cuda for tensor in tensors) and triton_available():
        return 'triton'
    if native and on_cpu and native_module() is not None:
        return 'native'
    return 'tiled'


def native_module(required: bool = False) -> Optional[ModuleType]:
    """The compiled C++ CPU kernels (:func:`mmdynup.ops.native.native_kernels`), or None."""
    return importlib.import_module('mmdynup.ops.native').native_kernels(required)


def autocast_inputs(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """Cast floating-point inputs to the autocast dtype when autocast is on for their device.

    The fast paths run with autocast disabled inside (they choose their own accumulation), so
    they take inputs the way autocast hands them to ``bmm``: all in the autocast dtype. This is
    also what the reference's ``einsum`` does under autocast, so both give the same dtype.
    """
    device_type = tensors[0].device.type
    if not is_autocast_enabled(device_type):
        return tensors
    dtype = get_autocast_dtype(device_type)
    return tuple(tensor.to(dtype) if tensor.is_floating_point() else tensor
                 for tensor in tensors)


def autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    """A block that runs with autocast off for ``device_type`` (fast-path internals)."""
    return torch.autocast(device_type=device_type, enabled=False)
