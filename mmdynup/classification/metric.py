"""Top-1 / top-5 accuracy for mmengine's evaluator (the authors' ``acc1`` / ``acc5``)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS as ENGINE_METRICS
from mmengine.registry import Registry

METRICS = Registry('metric', parent=ENGINE_METRICS, scope='mmdynup')


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Percentage of samples whose ``gt_label`` is among the ``k`` highest ``pred_score``s.

    Args:
        topk: the k values (default (1, 5)); with fewer classes than k every sample counts as
            correct, as ``torch.topk`` over all classes (the authors' ``misc.accuracy``).
        collect_device, prefix: as mmengine's ``BaseMetric`` (prefix ``'accuracy'``).

    Results: ``top1``, ``top5`` ... in percent.
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu',
                 prefix: str = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'topk must be positive integers, got {topk}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'pred_score' not in sample or 'gt_label' not in sample:
                raise KeyError(f'TopKAccuracy needs pred_score and gt_label in every sample, got '
                               f'{sorted(sample)}')
            score, label = sample['pred_score'].float().cpu(), int(sample['gt_label'])
            ranked = score.topk(min(max(self.topk), score.numel())).indices
            self.results.append([label in ranked[:k].tolist() for k in self.topk])

    def compute_metrics(self, results: List[List[bool]]) -> Dict[str, float]:
        correct = torch.tensor(results, dtype=torch.float64)
        return {f'top{k}': float(correct[:, i].mean() * 100) for i, k in enumerate(self.topk)}
