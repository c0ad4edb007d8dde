"""Panoptic FPN end to end on tiny COCO-panoptic data written by the test: ``tools/train.py`` for
one short epoch -> checkpoint -> ``tools/test.py`` with mmdet's stock ``LoadPanopticAnnotations``
and ``CocoPanopticMetric`` (the ``panopticapi`` module of the pinned panopticapi-lite), for the
R50 config with DySample in the FPN (the nearest and DySample+ configs build, compute their loss
and predict in ``tests/configs/test_det_configs.py``; the run path is the same).

The configs are ours, inherited unchanged apart from what tiny data needs: ``test_end_to_end``'s
override (a ResNet-18 backbone without a download, the neck, its upsamplers and the semantic head
keeping their channels; 64 x 64 images, few proposals, data loading in the main process,
``score_thr=0``), panoptic pipelines and a stuff area limit that fits 64 x 64 images, so that an
untrained model still returns segments for the metric to score.
"""
import re

import pytest

from mmdynup.datasets.synthetic_coco import write_synthetic_coco
from tests.conftest import REPO_ROOT
from tests.det.test_end_to_end import BATCH, _tiny_config, train_one_epoch_then_test

pytest.importorskip('panopticapi', reason='mmdet imports panopticapi for panoptic data and PQ')

TRAIN_IMAGES, VAL_IMAGES = 2, 2

#: Panoptic data on top of ``test_end_to_end``'s tiny detector override (which it inherits).
PANOPTIC_DATA = """_base_ = {tiny_detector!r}
model = dict(test_cfg=dict(panoptic=dict(stuff_area_limit=16)))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadPanopticAnnotations'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]))
val_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={data_root!r} + 'annotations/panoptic_val2017.json',
                     seg_prefix={data_root!r} + 'annotations/panoptic_val2017/')
test_evaluator = val_evaluator
"""


def write_tiny_panoptic(path, config, data_root):
    """A tiny-data override of ``configs/<config>`` (also used by the checkpoint test)."""
    tiny_detector = _tiny_config(path.with_name(f'{path.stem}_detector.py'),
                                 REPO_ROOT / 'configs' / config, data_root, with_mask=False)
    path.write_text(PANOPTIC_DATA.format(tiny_detector=str(tiny_detector),
                                         data_root=str(data_root) + '/'))
    return path


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_coco_panoptic') / 'coco'
    write_synthetic_coco(root, num_train=TRAIN_IMAGES, num_val=VAL_IMAGES, size=64, seed=0)
    return root


@pytest.mark.parametrize('upsampler', ['dysample'])
def test_train_checkpoint_then_test_prints_pq(upsampler, coco_root, tmp_path):
    tiny = write_tiny_panoptic(tmp_path / 'tiny.py',
                               f'panoptic-fpn/panoptic-fpn_r50_fpn-{upsampler}_1x_coco.py',
                               coco_root)
    losses, printed = train_one_epoch_then_test(tiny, tmp_path, TRAIN_IMAGES // BATCH)
    assert all(entry['loss'] == entry['loss'] and entry['loss_seg'] > 0 for entry in losses)
    for name in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        value = re.search(rf'coco_panoptic/{name}: (-?[0-9.]+)', printed)
        assert value, f'tools/test.py printed no coco_panoptic/{name}'
        assert 0.0 <= float(value[1]) <= 100.0, f'{name}={value[1]}'
