"""Tiny matting models and data for the tests: a narrow ResNet-18 encoder at every width the
decoder stages need (32 channels everywhere, the A2U GroupNorm minimum)."""
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import BaseDataElement


def snippet(path: Path) -> dict:
    return dict(Config.fromfile(str(path)).upsample_cfg)


def tiny_model(upsample_cfg=None):
    """A2UMatting with a ResNet-18 of 8-channel stem (encoder 8, 8, 16, 32) and 32-wide ASPP and
    decoder stages, batch norm, no pretrained weights."""
    init_default_scope('mmseg')
    from mmdynup.matting import A2UMatting
    backbone = dict(type='ResNetWithStem', depth=18, in_channels=4, num_stages=3,
                    strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(0, 1, 2),
                    stem_channels=8, base_channels=8)
    return A2UMatting(backbone=backbone, encoder_channels=(8, 8, 16, 32), aspp_channels=32,
                      decoder_channels=(32, 32, 32, 16), upsample_cfg=upsample_cfg)


def packed_matting_batch(batch: int, height: int, width: int, seed: int = 0) -> dict:
    """What the pipeline packs: BGR images 0..255, trimaps 0 / 128 / 255, alphas, fg and bg."""
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        alpha = torch.rand(1, height, width, generator=generator)
        trimap = torch.full((1, height, width), 128, dtype=torch.uint8)
        trimap[alpha < 0.2] = 0
        trimap[alpha > 0.8] = 255
        sample = BaseDataElement(metainfo=dict(ori_shape=(height, width)))
        sample.gt_alpha, sample.trimap = alpha, trimap
        sample.fg = 255 * torch.rand(3, height, width, generator=generator)
        sample.bg = 255 * torch.rand(3, height, width, generator=generator)
        inputs.append(sample.fg * alpha + sample.bg * (1 - alpha))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
