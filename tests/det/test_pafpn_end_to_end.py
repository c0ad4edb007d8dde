"""End to end for a path-aggregation config on tiny COCO-format data: ``tools/train.py`` for one
epoch of two iterations -> checkpoint -> ``tools/test.py`` with mmdet's CocoMetric (bbox AP), for
RTMDet-tiny with FADE (guided, in CSPNeXtPAFPN). The other PAFPN / YOLOX / RTMDet configs are
built and counted in ``test_pafpn_configs`` and their necks run every upsampler forward and
backward in ``test_pafpn``; the train -> checkpoint -> test path is the same for all of them.

The configs are ours, inherited unchanged apart from what tiny data needs: a narrow backbone
without a download (RTMDet's at 1/8 of its widths), 64 x 64 images, a plain train pipeline
instead of RTMDet's Mosaic and MixUp (which need many images), no multi-scale batch resizing,
BN for RTMDet's SyncBN (a single CPU process), data loading in the main process, and ``score_thr=0`` so that an untrained model still returns
detections for the metric to score.
"""
import re

import pytest

from tests.conftest import REPO_ROOT
from tests.det.test_end_to_end import BATCH, train_one_epoch_then_test
from tests.det.test_end_to_end import coco_root  # noqa: F401  (the module's fixture)

# Narrow one-stage detectors: backbone outputs 32 / 64 / 128 channels, a 32-channel neck and head.
ONE_STAGE_MODEL = {
    'rtmdet': """model = dict(
    backbone=dict(widen_factor=0.125, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128], out_channels=32, norm_cfg=dict(type='BN')),
    bbox_head=dict(in_channels=32, feat_channels=32, norm_cfg=dict(type='BN')),
    test_cfg=dict(score_thr=0.0))
""",
}


def _one_stage_config(path, base, data_root, family):
    path.write_text(f"""_base_ = {str(base)!r}
data_root = {str(data_root) + '/'!r}
{ONE_STAGE_MODEL[family]}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size={BATCH}, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(_delete_=True, type='CocoDataset', data_root=data_root,
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'), filter_cfg=dict(filter_empty_gt=True),
                 pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, pin_memory=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=10)
default_hooks = dict(logger=dict(interval=1))
""")
    return path


# One run: each further family cost 25-100 s of the suite's 15-minute budget on 2 cores
# (tests/det/test_end_to_end.py runs the two-stage detectors).
@pytest.mark.parametrize('config', [
    'rtmdet/rtmdet_tiny_cspnext-pafpn-fade_8xb32-300e_coco.py',
], ids=['rtmdet-fade'])
def test_train_checkpoint_then_test_with_coco_metric(config, coco_root, tmp_path):  # noqa: F811
    family = config.split('/')[0]
    base = REPO_ROOT / 'configs' / config
    tiny = _one_stage_config(tmp_path / 'tiny.py', base, coco_root, family)
    losses, printed = train_one_epoch_then_test(tiny, tmp_path)
    assert all(entry['loss'] == entry['loss'] for entry in losses)
    value = re.search(r'coco/bbox_mAP: (-?[0-9.]+)', printed)
    assert value, 'tools/test.py printed no coco/bbox_mAP'
    assert 0.0 <= float(value[1]) <= 1.0, f'bbox mAP={value[1]}'
