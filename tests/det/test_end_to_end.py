"""End to end on tiny COCO-format data written by the test: ``tools/train.py`` for one short epoch
-> checkpoint -> ``tools/test.py`` with mmdet's CocoMetric, for a Mask R-CNN config with DySample+
(bbox and segm AP) and a Faster R-CNN config with a guided upsampler (FADE, bbox AP).

The configs are ours, inherited unchanged apart from what tiny data needs: a ResNet-18 backbone
without a download (the neck and its upsamplers keep their 256 channels), 64 x 64 images, few
proposals, data loading in the main process, and ``score_thr=0`` so that an untrained model still
returns detections for the metric to score.
"""
import json
import re

import pytest

from mmdynup.datasets.synthetic_coco import write_synthetic_coco
from tests.conftest import REPO_ROOT, run_tool_process

TRAIN_IMAGES, VAL_IMAGES, BATCH = 4, 2, 2


def _tiny_config(path, base, data_root, with_mask):
    annotations = "dict(type='LoadAnnotations', with_bbox=True" + \
        (", with_mask=True)" if with_mask else ")")
    path.write_text(f"""_base_ = {str(base)!r}
data_root = {str(data_root) + '/'!r}
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=64),
                   rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=64),
                  rcnn=dict(score_thr=0.0, max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    {annotations},
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    {annotations},
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size={BATCH}, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=10)
default_hooks = dict(logger=dict(interval=1))
# Seeded: tools/train.py otherwise draws a seed, and an untrained detector's output with it.
randomness = dict(seed=0)
""")
    return path


def train_one_epoch_then_test(tiny, tmp_path, iterations=TRAIN_IMAGES // BATCH):
    """tools/train.py one epoch (``iterations`` logged losses) -> epoch_1.pth -> tools/test.py on
    it. Returns the logged loss entries and what tools/test.py printed."""
    work_dir = tmp_path / 'work'
    run_tool_process('train', tiny, '--work-dir', work_dir)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    log = next(work_dir.glob('*/vis_data/scalars.json')).read_text().splitlines()
    losses = [json.loads(line) for line in log if '"loss"' in line]
    assert len(losses) == iterations
    return losses, run_tool_process('test', tiny, checkpoint, '--work-dir', tmp_path / 'test')


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_coco') / 'coco'
    write_synthetic_coco(root, num_train=TRAIN_IMAGES, num_val=VAL_IMAGES, size=64, seed=0)
    return root


@pytest.mark.parametrize('config, metrics', [
    ('mask-rcnn/mask-rcnn_r50_fpn-dysample-plus_1x_coco.py', ('bbox', 'segm')),
    ('faster-rcnn/faster-rcnn_r50_fpn-fade_1x_coco.py', ('bbox',)),
], ids=['mask-rcnn-dysample-plus', 'faster-rcnn-fade'])
def test_train_checkpoint_then_test_with_coco_metric(config, metrics, coco_root, tmp_path):
    tiny = _tiny_config(tmp_path / 'tiny.py', REPO_ROOT / 'configs' / config, coco_root,
                        with_mask='segm' in metrics)
    losses, printed = train_one_epoch_then_test(tiny, tmp_path)
    assert all(entry['loss'] == entry['loss'] for entry in losses)
    for metric in metrics:
        value = re.search(rf'coco/{metric}_mAP: (-?[0-9.]+)', printed)
        assert value, f'tools/test.py printed no coco/{metric}_mAP'
        assert 0.0 <= float(value[1]) <= 1.0, f'{metric} mAP={value[1]}'
