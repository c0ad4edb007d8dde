# FADE's region-sensitive toy task: segment the synthetic scenes (64 x 64, written by
# tools/demo.py) with the toy encoder-decoder of mmdynup/toy/network.py (widths 32 at strides 1,
# 2, 4, 8; no skips; guided upsamplers guided by the encoder feature of each resolution).
# tools/demo.py swaps upsample_cfg for each snippet of configs/_base_/upsamplers.
_base_ = ['./toy_schedule_adam-200it.py', '../_base_/upsamplers/bilinear.py']

widths = [32, 32, 32, 32]
crop_size = (64, 64)
data_root = 'data/synthetic_ade_64'
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                           seg_pad_val=255, size=crop_size),
    backbone=dict(type='ToyEncoder', in_channels=3, widths=widths),
    decode_head=dict(type='ToyDecodeHead', in_channels=widths, num_classes=4,
                     upsample_cfg={{_base_.upsample_cfg}},
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                      loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='SyntheticADE20KDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SyntheticADE20KDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_evaluator = [
    dict(type='IoUMetric', iou_metrics=['mIoU'], prefix='segmentation'),
    dict(type='BoundaryIoUMetric', num_classes=4, width=2),
]
