"""mmdet's released CARAFE detectors: a synthetic checkpoint in their layout (``FPN_CARAFE``'s
``neck.upsample_modules.<i>.channel_compressor`` / ``content_encoder``, the mask head's CARAFE
``upsample``) is detected by its keys, converted by ``tools/convert_checkpoint.py`` (also
``--dry-run``) and evaluated with ``tools/test.py`` in our Mask R-CNN CARAFE config, on tiny
generated COCO data."""
import torch

from mmdynup.converters.checkpoint_io import choose_source, load_checkpoint
from mmdynup.datasets.synthetic_coco import write_synthetic_coco
from tests.conftest import REPO_ROOT
from tests.tools.conftest import load_tool
from tests.tools.test_fork_checkpoint_evaluation import _convert_and_test, _perturbed_model

CONFIG = REPO_ROOT / 'configs/mask-rcnn/mask-rcnn_r50_fpncarafe-carafe_1x_coco.py'
TINY = """_base_ = {base!r}
data_root = {data_root!r}
model = dict(
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16,
              upsample_cfg=dict(compressed_channels=8)),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=16),
                  bbox_head=dict(in_channels=16, fc_out_channels=32),
                  mask_roi_extractor=dict(out_channels=16),
                  mask_head=dict(num_convs=1, in_channels=16, conv_out_channels=16,
                                 upsample_cfg=dict(compressed_channels=8))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=64),
                  rcnn=dict(score_thr=0.0, max_per_img=20)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
"""


def _mmdet_checkpoint(model, path):
    """Our weights under mmdet's FPN_CARAFE names (mask head keys are already mmdet's)."""
    state_dict = {key.replace('neck.upsamplers.', 'neck.upsample_modules.', 1): value.clone()
                  for key, value in model.state_dict().items()}
    assert 'neck.upsample_modules.3.content_encoder.weight' in state_dict
    assert 'roi_head.mask_head.upsample.channel_compressor.weight' in state_dict
    torch.save({'state_dict': state_dict, 'meta': {'epoch': 12}}, path)


def test_mmdet_carafe_checkpoint_is_detected_converts_and_evaluates(tmp_path, capsys):
    data_root = tmp_path / 'coco'
    write_synthetic_coco(data_root, num_train=1, num_val=2, size=64)
    config = tmp_path / 'mask_rcnn_carafe_tiny.py'
    config.write_text(TINY.format(base=str(CONFIG), data_root=str(data_root) + '/'))
    model = _perturbed_model(config)
    mmdet_path = tmp_path / 'mask_rcnn_r50_fpn_carafe_1x_coco.pth'
    _mmdet_checkpoint(model, mmdet_path)

    source, how = choose_source(load_checkpoint(str(mmdet_path)))
    assert source.name == 'mmdet-carafe' and '3x3 extra lateral' in how
    assert load_tool('convert_checkpoint.py').main(
        [str(mmdet_path), '--dry-run']) == 0
    printed = capsys.readouterr().out
    assert 'neck.upsample_modules.0.channel_compressor.weight' in printed
    assert 'neck.upsamplers.0.channel_compressor.weight' in printed

    metrics = _convert_and_test(tmp_path, config, mmdet_path, model, 'mmdet-carafe')
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0 and 0.0 <= metrics['coco/segm_mAP'] <= 1.0
