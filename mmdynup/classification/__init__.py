"""ImageNet classification fine-tuning of MIRL's deeper ViTs (Huang et al., NeurIPS 2023).

The recipe of the authors' ``main_finetune.py``: :class:`MIRLClassifier` (MIRLViT, global
average pool, ``fc_norm``, linear head), :class:`ClassificationDataPreprocessor` (random erasing,
label smoothing, mixup / cutmix), :class:`ThresholdWarmupEMA` (their weight EMA, for mmengine's
``EMAHook``) and :class:`TopKAccuracy`. The data path is :mod:`mmdynup.datasets.imagenet_layout`.
Needs mmseg (the backbone subclasses mmseg's ``MAE``).
"""
from .batch_augments import erase_random_box_, mix_batch, smooth_one_hot
from .classifier import MIRLClassifier
from .data_preprocessor import ClassificationDataPreprocessor
from .ema import ThresholdWarmupEMA, threshold_decay
from .metric import TopKAccuracy

__all__ = ['ClassificationDataPreprocessor', 'MIRLClassifier', 'ThresholdWarmupEMA',
           'TopKAccuracy', 'erase_random_box_', 'mix_batch', 'smooth_one_hot', 'threshold_decay']
