"""The weight EMA of MIRL fine-tuning, for mmengine's ``EMAHook``.

MIRL fine-tunes with ``--use_ema`` (``russellllaputa/MIRL``, ``main_finetune.py``),
PaddleDetection's ``ModelEMA`` (their ``util/ema.py``) with its defaults: after every optimizer
step t = 0, 1, ...

    decay_t = min(0.9998, (1 + t) / (10 + t))            ('threshold' warm-up)
    raw_t   = decay_t * raw_{t-1} + (1 - decay_t) * w_t  (raw_{-1} = 0, every state-dict tensor)
    ema_t   = raw_t / (1 - decay_t ** (t + 1))           (bias correction, as their ``apply``)

The authors evaluate and save ``ema_t``. :class:`ThresholdWarmupEMA` keeps ``ema_t`` in its module
(what mmengine's ``EMAHook`` swaps in for validation, testing and checkpoints); ``raw_{t-1}`` is
recovered from it exactly as ``ema_{t-1} * (1 - decay_{t-1} ** t)``. ``ema_0`` is ``w_0``, so the
first update is mmengine's plain copy.
"""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.model import BaseAveragedModel
from torch import Tensor, nn

from ..registry import MODELS


def threshold_decay(step: int, decay: float) -> float:
    """``min(decay, (1 + step) / (10 + step))``: the decay of update ``step`` (0-based)."""
    return min(decay, (1.0 + step) / (10.0 + step))


@MODELS.register_module()
class ThresholdWarmupEMA(BaseAveragedModel):
    """Bias-corrected EMA with the threshold warm-up of the authors' ``ModelEMA``.

    Args:
        model: the model to average.
        decay: the decay cap (0.9998).
        interval: optimizer steps happen every ``interval`` training iterations (mmengine's
            ``accumulative_counts``); the EMA updates after each of them only.
        device: where to keep the average.
        update_buffers: average the buffers too (True: the authors average the state dict).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, interval: int = 1,
                 device: Optional[torch.device] = None, update_buffers: bool = True):
        super().__init__(model, interval, device, update_buffers)
        if not 0.0 < decay < 1.0:
            raise ValueError(f'decay must be in (0, 1), got {decay}')
        self.decay = decay

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        """Update ``steps`` (0-based) in place: ``averaged_param`` holds ``ema_{steps-1}``."""
        decay = threshold_decay(steps, self.decay)
        if steps == 0:
            averaged_param.copy_(source_param)
            return
        previous_correction = 1.0 - threshold_decay(steps - 1, self.decay) ** steps
        raw = averaged_param * previous_correction
        raw.mul_(decay).add_(source_param, alpha=1.0 - decay)
        averaged_param.copy_(raw / (1.0 - decay ** (steps + 1)))

    def update_parameters(self, model: nn.Module) -> None:
        """Called by ``EMAHook`` after every training iteration; updates after optimizer steps."""
        self.steps += 1
        if int(self.steps) % self.interval:
            return
        step = int(self.steps) // self.interval - 1
        sources = model.state_dict() if self.update_buffers else dict(model.named_parameters())
        for name, averaged in self.avg_parameters.items():
            source = sources[name].data.to(averaged.device)
            if averaged.dtype.is_floating_point:
                self.avg_func(averaged.data, source, step)
            else:
                averaged.data.copy_(source)
        if not self.update_buffers:
            for averaged, source in zip(self.module.buffers(), model.buffers()):
                averaged.data.copy_(source.data.to(averaged.device))
