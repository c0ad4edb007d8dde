# The demo's baseline: a small SegFormer (MiT with 16-128 channels, one block per stage, trained
# from scratch) on the synthetic ADE20K-layout set that tools/demo.py writes. Stock mmseg
# SegFormer head behaviour: no upsample_cfg, so it resizes every stage straight to 1/4 bilinearly.
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)

crop_size = (128, 128)
data_root = 'data/synthetic_ade'
max_iters = 1200
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None, embed_dims=16, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                  drop_path_rate=0.0),
    decode_head=dict(type='SegformerHeadWithUpsampler',
                     in_channels=[16, 32, 64, 128], channels=64, num_classes=4,
                     norm_cfg=norm_cfg,
                     # The scenes ignore no pixel: the same loss, without mmseg's warning.
                     loss_decode=dict(avg_non_ignore=True)))

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
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='SyntheticADE20KDataset', data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(type='SyntheticADE20KDataset', data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
                     paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
