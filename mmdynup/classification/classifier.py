"""The image classifier MIRL fine-tunes on ImageNet-1K: a ViT, global average pool, LayerNorm,
linear head.

The authors' fine-tuning model is MAE's ``models_vit.VisionTransformer`` with
``global_pool=True`` (``russellllaputa/MIRL``, ``models_vit.py``): the encoder's final ``norm`` is
removed, the patch tokens of the last block (cls token excluded) are averaged, normalised by a
fresh ``fc_norm`` (LayerNorm, eps 1e-6) and classified by ``head`` (Linear, weight initialised
N(0, 2e-5) truncated, ``main_finetune.py``). No layer scale. Here the encoder is our
:class:`~mmdynup.backbones.MIRLViT` (``layer_scale=False``), which also resizes its position
embedding to any input grid.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from ..registry import MODELS


@MODELS.register_module()
class MIRLClassifier(BaseModel):
    """ViT classifier with global average pooling and ``fc_norm`` (MAE / MIRL fine-tuning).

    Args:
        backbone: :class:`~mmdynup.backbones.MIRLViT` arguments (``arch``, ``img_size``,
            ``drop_path_rate``, ``init_cfg`` ...). ``out_indices`` (the last block),
            ``final_norm`` (False) and ``layer_scale`` (False) are set here.
        num_classes: K (1000 for ImageNet-1K).
        head_init_std: std of the truncated-normal head weight (2e-5, ``main_finetune.py``).
        norm_eps: ``fc_norm`` epsilon (1e-6).
        data_preprocessor: e.g. :class:`~.ClassificationDataPreprocessor`.
        init_cfg: mmengine init config of the whole model.

    Shapes: inputs (N, 3, H, W) with H, W multiples of the patch size; logits (N, K).

    Losses: the soft-target cross-entropy ``-sum(gt_score * log_softmax(logits))`` averaged over
    the batch when the samples carry ``gt_score`` (set by the preprocessor in training: label
    smoothing and mixup / cutmix), plain cross-entropy on ``gt_label`` otherwise.
    """

    def __init__(self, backbone: dict, num_classes: int = 1000, head_init_std: float = 2e-5,
                 norm_eps: float = 1e-6,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        from ..backbones import MIRLViT  # needs mmseg (MIRLViT subclasses mmseg's MAE)
        backbone = dict(backbone)
        backbone.pop('type', None)
        depth = MIRLViT._preset(backbone.get('arch', 'vit-b48'))['num_layers']
        depth = backbone.get('num_layers') or depth
        backbone.update(out_indices=(depth - 1,), final_norm=False, layer_scale=False)
        self.backbone = MIRLViT(**backbone)
        width = self.backbone.embed_dims
        self.num_classes = int(num_classes)
        self.head_init_std = head_init_std
        self.fc_norm = nn.LayerNorm(width, eps=norm_eps)
        self.head = nn.Linear(width, self.num_classes)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.trunc_normal_(self.head.weight, std=self.head_init_std,
                              a=-2 * self.head_init_std, b=2 * self.head_init_std)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, inputs: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, D): ``fc_norm`` of the mean patch token of the last block."""
        last = self.backbone(inputs)[-1]
        return self.fc_norm(last.flatten(2).mean(dim=2))

    def forward(self, inputs: Tensor, data_samples: Optional[Sequence] = None,
                mode: str = 'tensor'):
        """mmengine entry point: ``'tensor'`` -> logits (N, K); ``'loss'`` -> ``dict(loss)``;
        ``'predict'`` -> the samples with ``pred_score`` (K,) softmax and ``pred_label``."""
        if mode not in ('tensor', 'loss', 'predict'):
            raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
        logits = self.head(self.forward_features(inputs))
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            return dict(loss=self.loss(logits, data_samples))
        return self.predict(logits, data_samples)

    def loss(self, logits: Tensor, data_samples: Sequence) -> Tensor:
        if not data_samples:
            raise ValueError("mode='loss' needs data_samples with gt_score or gt_label")
        if all('gt_score' in sample for sample in data_samples):
            targets = torch.stack([sample.gt_score for sample in data_samples]).to(logits)
            return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        labels = torch.stack([sample.gt_label for sample in data_samples]).to(logits.device)
        return F.cross_entropy(logits, labels)

    @staticmethod
    def predict(logits: Tensor, data_samples: Optional[Sequence]) -> List[BaseDataElement]:
        scores = logits.float().softmax(dim=-1)
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(len(logits))]
        for sample, score in zip(data_samples, scores):
            sample.pred_score = score.detach()
            sample.pred_label = score.argmax().detach()
        return list(data_samples)

    def parameter_counts(self) -> Dict[str, int]:
        """Parameters of the backbone, ``fc_norm`` and ``head`` (and their total)."""
        counts = {name: sum(p.numel() for p in getattr(self, name).parameters())
                  for name in ('backbone', 'fc_norm', 'head')}
        counts['total'] = sum(counts.values())
        return counts
