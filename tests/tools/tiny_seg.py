"""A tiny mmseg config (ResNet-18 with 8 base channels, UPerNet head) on the synthetic
ADE20K-layout set, small enough that a few iterations in two CPU processes take seconds."""
from pathlib import Path

from mmdynup.datasets import write_synthetic_ade

IMAGE_SIZE = 64

CONFIG_TEMPLATE = '''
_base_ = ['mmseg::upernet/upernet_r18_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)

crop_size = ({size}, {size})
data_root = {data_root!r}
max_iters = {max_iters}
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(stem_channels=8, base_channels=8, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=8, num_classes=4, norm_cfg=norm_cfg,
                     loss_decode=dict(avg_non_ignore=True), {decode_head_extra}),
    auxiliary_head=None)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='SyntheticADE20KDataset', data_root=data_root, pipeline=pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(type='SyntheticADE20KDataset', data_root=data_root, pipeline=pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
    visualization=dict(type='SegVisualizationHook', draw=False))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
randomness = dict(seed=0)
'''


def write_tiny_seg(directory: Path, max_iters: int = 2, decode_head_extra: str = '',
                   num_train: int = 4, num_val: int = 2) -> Path:
    """Write the data (``directory/data``) and the config (``directory/tiny_seg.py``)."""
    data_root = Path(directory) / 'data'
    write_synthetic_ade(data_root, num_train=num_train, num_val=num_val, size=IMAGE_SIZE)
    config = Path(directory) / 'tiny_seg.py'
    config.write_text(CONFIG_TEMPLATE.format(size=IMAGE_SIZE, data_root=str(data_root),
                                             max_iters=max_iters,
                                             decode_head_extra=decode_head_extra))
    return config
