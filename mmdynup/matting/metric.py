"""``CompositionErrors``: the mmengine metric that averages :func:`composition_errors` (SAD, MSE,
Grad, Conn) over a test set, as the Composition-1K tables report them."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from .errors import composition_errors

METRIC_NAMES = ('SAD', 'MSE', 'Grad', 'Conn')


def _array(value) -> np.ndarray:
    value = value.detach().cpu().numpy() if hasattr(value, 'detach') else np.asarray(value)
    return value[0] if value.ndim == 3 else value  # (1, H, W) -> (H, W)


@METRICS.register_module()
class CompositionErrors(BaseMetric):
    """Mean SAD / MSE / Grad / Conn over the samples' ``pred_alpha``, ``gt_alpha`` and ``trimap``.

    Args:
        quantize: round the prediction to 8 bits first (``round(255 p) / 255``), as the
            published numbers were computed on predictions saved as PNG files.
        collect_device, prefix: ``BaseMetric``'s.
    """

    #: No prefix: the keys stay SAD / MSE / Grad / Conn, the names of the published tables ('' and
    #: not None, for which mmengine warns).
    default_prefix: Optional[str] = ''

    def __init__(self, quantize: bool = True, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.quantize = quantize

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = _array(sample['pred_alpha']).astype(np.float64)
            if self.quantize:
                pred = np.round(pred * 255) / 255
            self.results.append(composition_errors(
                pred, _array(sample['gt_alpha']).astype(np.float64),
                _array(sample['trimap']).astype(np.uint8)))

    def compute_metrics(self, results: List[Dict[str, float]]) -> Dict[str, float]:
        return {name: float(np.mean([result[name] for result in results]))
                for name in METRIC_NAMES}
