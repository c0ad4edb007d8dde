"""Mixed precision on machines without CUDA.

mmengine's ``AmpOptimWrapper`` refuses to start without CUDA/NPU/MLU/MUSA. On a CPU the same job is
plain bfloat16 autocast: bfloat16 has float32's exponent range, so no loss scaling is needed.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast('cpu', dtype=bfloat16)``."""

    def __init__(self, *args, dtype: str = 'bfloat16', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"dtype must be 'bfloat16' or 'float16' on CPU, got {dtype!r}")
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
