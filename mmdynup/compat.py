"""The few torch APIs newer than our oldest supported torch (2.0), each with its older spelling.

pyproject.toml admits ``torch>=2.0`` so that mmdynup installs beside the OpenMMLab stacks people
already have (torch 2.0 / 2.1 with mmcv 2.1). Code paths call these instead of the new names.
"""
from __future__ import annotations

from typing import Iterable

import torch


def is_compiling() -> bool:
    """True while dynamo traces (``torch.compile`` / ``torch.export``); torch >= 2.3 spells it
    ``torch.compiler.is_compiling``, torch 2.0 - 2.2 ``torch._dynamo.is_compiling``."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    from torch import _dynamo
    return _dynamo.is_compiling()


def is_autocast_enabled(device_type: str) -> bool:
    """Autocast state for ``device_type`` (``'cpu'``, ``'cuda'``, ...); the device argument
    exists from torch 2.4, before it the CPU state had its own function."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no argument, CUDA only
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return device_type == 'cuda' and torch.is_autocast_enabled()


def get_autocast_dtype(device_type: str) -> torch.dtype:
    """The autocast dtype of ``device_type``; ``torch.get_autocast_dtype`` exists from 2.4."""
    if hasattr(torch, 'get_autocast_dtype'):
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()


def add_safe_globals(objects: Iterable[object]) -> bool:
    """Allow-list ``objects`` for ``torch.load(weights_only=True)`` where torch can (>= 2.4).

    Returns False on older torch, whose ``weights_only`` unpickler has no allow-list; there
    ``torch.load`` defaults to ``weights_only=False`` (mmengine's own loads work unchanged), and
    mmdynup's converters, which always pass ``weights_only=True``, load plain state dicts only.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return False
    add(list(objects))
    return True
