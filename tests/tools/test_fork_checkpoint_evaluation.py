"""Evaluating released checkpoints: a synthetic checkpoint in the layout of the authors' forks
(``upsample_modules.<i>.*``, the fork's config text in ``meta['cfg']``) goes through
``tools/convert_checkpoint.py`` (source detected from the keys) and ``tools/test.py`` on tiny
generated data, exactly the commands of the README."""
import pytest
import torch

from .conftest import load_tool
from .tiny_seg import write_tiny_seg

pytest.importorskip('mmdet', reason='the fork checkpoints are mmseg / mmdet models')

DETECTOR = """
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
data_root = {data_root!r}
model = dict(
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    neck=dict(type='FPNWithUpsampler', in_channels=[8, 16, 32, 64], out_channels=16,
              upsample_cfg=dict(type='DySample', dyscope=True, scope_bias=True)),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=16),
                  bbox_head=dict(in_channels=16, fc_out_channels=32)),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=64),
                  rcnn=dict(score_thr=0.0, max_per_img=20)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
"""
#: The fork's own config, as mmengine stores its text in meta['cfg'] (only what is read back).
FORK_DETECTOR_CFG = """model = dict(type='FasterRCNN', neck=dict(type='FPN_UPSAMPLE',
    in_channels=[8, 16, 32, 64], out_channels=16, num_outs=5,
    upsample_cfg=dict(type='dysample', guided=False, style='lp', groups=4, dyscope=True)))
"""
FORK_SEGMENTOR_CFG = """model = dict(type='EncoderDecoder', decode_head=dict(
    type='UPerHead_Upsample', in_channels=[8, 16, 32, 64], channels=8, num_classes=4,
    upsample_cfg=dict(type='dysample', guided=False, style='lp', groups=4, dyscope=True)))
"""


def _perturbed_model(config):
    """The config's model with every floating tensor moved off its initial value (so a key that
    failed to load would show)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return model


def _fork_checkpoint(model, path, ours_prefix, fork_prefix, fork_cfg):
    """Our weights under the fork's key names, saved as an mmengine checkpoint of the fork."""
    state_dict = {key.replace(ours_prefix, fork_prefix, 1): value.clone()
                  for key, value in model.state_dict().items()}
    assert any(fork_prefix in key for key in state_dict)
    torch.save({'state_dict': state_dict, 'meta': {'cfg': fork_cfg, 'iter': 80000}}, path)


def _convert_and_test(tmp_path, config, fork_path, model, source):
    converted_path = tmp_path / 'converted.pth'
    assert load_tool('convert_checkpoint.py').main([str(fork_path), str(converted_path)]) == 0
    converted = torch.load(converted_path, weights_only=True)
    assert converted['meta']['source'] == source and 'detected' in converted['meta']['detection']
    expected = model.state_dict()
    assert list(converted['state_dict']) == list(expected)
    for key, value in expected.items():
        assert torch.equal(converted['state_dict'][key], value), key
    return load_tool('test.py').main([str(config), str(converted_path), '--work-dir',
                                      str(tmp_path / 'eval')])


def test_detection_fork_checkpoint_converts_and_evaluates_on_coco_layout(tmp_path):
    from mmdynup.datasets.synthetic_coco import write_synthetic_coco
    data_root = tmp_path / 'coco'
    write_synthetic_coco(data_root, num_train=1, num_val=2, size=64)
    config = tmp_path / 'detector.py'
    config.write_text(DETECTOR.format(data_root=str(data_root) + '/'))
    model = _perturbed_model(config)
    fork_path = tmp_path / 'faster-rcnn_r50_fpn_dysample-plus_fork.pth'
    _fork_checkpoint(model, fork_path, 'neck.upsamplers.', 'neck.upsample_modules.',
                     FORK_DETECTOR_CFG)
    metrics = _convert_and_test(tmp_path, config, fork_path, model, 'detection-fork')
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0


def test_segmentation_fork_checkpoint_converts_and_evaluates_on_ade_layout(tmp_path):
    config = write_tiny_seg(tmp_path, decode_head_extra=(
        "type='UPerHeadWithUpsampler', "
        "upsample_cfg=dict(type='DySample', dyscope=True, scope_bias=True)"))
    model = _perturbed_model(config)
    fork_path = tmp_path / 'upernet_r18_dysample-plus_fork.pth'
    _fork_checkpoint(model, fork_path, 'decode_head.upsamplers.',
                     'decode_head.upsample_modules.', FORK_SEGMENTOR_CFG)
    metrics = _convert_and_test(tmp_path, config, fork_path, model, 'segmentation-fork')
    assert 0.0 <= metrics['mIoU'] <= 100.0
