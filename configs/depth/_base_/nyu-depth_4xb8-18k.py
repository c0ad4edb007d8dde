# NYU Depth V2 data, evaluation and schedule for the depth configs of this folder.
# Changes to mmseg's NYU base (configs/_base_/datasets/nyu.py of mmseg 1.2.2):
# - the training pipeline without its `Albu` colour step (it needs albumentations, which mmseg
#   does not install); the other steps as there (a list cannot drop one item by merging);
# - `save_best='rmse', rule='less'` (mmseg's checkpoint hook keeps the last one otherwise);
# - the schedule of BTS (AdamW, eps 1e-6, weight decay 1e-2, lr 1e-4 polynomially to 1e-5)
#   over 18k iterations of 4 GPUs x 8 images (about 24 epochs of BTS's 24,231 training images,
#   the depth toolbox's 24-epoch schedule).
_base_ = ['mmseg::_base_/datasets/nyu.py', 'mmseg::_base_/default_runtime.py']

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='RandomDepthMix', prob=0.25),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=(480, 480)),
    dict(type='PackSegInputs',
         meta_keys=('img_path', 'depth_map_path', 'ori_shape', 'img_shape', 'pad_shape',
                    'scale_factor', 'flip', 'flip_direction', 'category_id')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_iters = 18000
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, eps=1e-6, weight_decay=1e-2))
param_scheduler = [dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, save_best='rmse',
                    rule='less', max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
