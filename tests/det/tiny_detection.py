"""Shared by the detection tests: cheap settings for mmdet's two-stage detectors and packed batches.

The architecture stays the config's; only the number of proposals and sampled RoIs drops (the
RoI heads' cost grows with them: 1000 proposals through the 12544 -> 1024 box head dominate a
64 x 64 image), and the backbone is not initialised from a download.
"""
from typing import Sequence, Tuple

import torch
from mmengine.config import Config

#: Dotted overrides of an mmdet two-stage ``model`` (Faster / Mask R-CNN, Panoptic FPN).
TINY_TWO_STAGE = {
    'model.backbone.init_cfg': None,
    'model.train_cfg.rpn_proposal.nms_pre': 200,
    'model.train_cfg.rpn_proposal.max_per_img': 64,
    'model.train_cfg.rcnn.sampler.num': 32,
    'model.test_cfg.rpn.nms_pre': 200,
    'model.test_cfg.rpn.max_per_img': 64,
    'model.test_cfg.rcnn.max_per_img': 20,
}


def shrink_two_stage(cfg: Config) -> Config:
    """Apply :data:`TINY_TWO_STAGE` in place (keys the config lacks are not added)."""
    present = {key: value for key, value in TINY_TWO_STAGE.items()
               if _has(cfg, key.rsplit('.', 1)[0])}
    cfg.merge_from_dict(present)
    return cfg


def _has(cfg: Config, dotted: str) -> bool:
    node = cfg
    for part in dotted.split('.'):
        if not hasattr(node, 'get') or node.get(part) is None:
            return False
        node = node.get(part)
    return True


def packed_batch(image_sizes: Sequence[Tuple[int, int]], num_boxes: Sequence[int],
                 with_mask: bool, with_semantic: bool, num_classes: int = 80,
                 num_stuff: int = 53) -> dict:
    """A batch as the data loader hands it to ``DetDataPreprocessor`` (uint8 images, ground
    truth in the images' coordinates), built with mmdet's own test helper."""
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(len(image_sizes), [(3, h, w) for h, w in image_sizes],
                            num_items=list(num_boxes), num_classes=num_classes,
                            with_mask=with_mask, with_semantic=with_semantic)
    if with_semantic:
        # Panoptic FPN labels stuff classes after the things; mmdet's helper draws 0..79 only.
        generator = torch.Generator().manual_seed(0)
        for sample in packed['data_samples']:
            semantic = sample.gt_sem_seg.sem_seg
            semantic.copy_(torch.randint(0, num_classes + num_stuff, semantic.shape,
                                         generator=generator))
    return packed

