# A2U matting (Dai et al., CVPR 2021) on Adobe Composition-1K, the network and recipe of the
# FADE / SAPA matting tables (poppinace/fade a2u_matting/fade.yaml, dongdong93/a2u_matting):
# ResNet-34 with RGB + trimap input, output stride 16, ASPP, four x2 decoder stages with a
# shortcut each; 512 x 512 crops centred on the unknown region, batch 16, Adam lr 0.01 (encoder
# lr / 100, the authors' `mult`), 30 epochs of 6,000 iterations, lr x 0.1 after epochs 20 and 26.
# The upsampler of the decoder stages is the bilinear baseline here; every config of this folder
# states its own (see README.md for what differs from the authors' network).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)

model = dict(
    type='A2UMatting',
    data_preprocessor=dict(type='MattingDataPreprocessor'),
    backbone=dict(
        type='ResNetWithStem', depth=34, in_channels=4, num_stages=3, strides=(1, 2, 2),
        dilations=(1, 1, 1), out_indices=(0, 1, 2), style='pytorch',
        norm_cfg=dict(type='SyncBN', requires_grad=True), norm_eval=True),  # authors: freeze_bn
    encoder_channels=(64, 64, 128, 256),
    aspp_channels=256,
    decoder_channels=(128, 64, 64, 32),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    act_cfg=dict(type='LeakyReLU', negative_slope=0.01),
    upsample_cfg=dict(type='BilinearUpsample'),
    pretrained='torchvision://resnet34')

crop_size = 512
data_root = 'data/adobe_composition-1k'
train_pipeline = [
    dict(type='LoadMattingImages'),
    dict(type='RandomMattingFlip', prob=0.5),
    dict(type='GenerateTrimap', kernel_sizes=(1, 29)),
    dict(type='CropAroundUnknown', crop_size=crop_size),
    dict(type='CompositeImage'),
    dict(type='PackMattingInputs'),
]
test_pipeline = [dict(type='LoadMattingImages'), dict(type='PackMattingInputs')]
train_dataloader = dict(
    batch_size=16, num_workers=8, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='CompositionMattingDataset', data_root=data_root,
        data_prefix=dict(fg='Training_set/fg', alpha='Training_set/alpha',
                         bg='Training_set/bg'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CompositionMattingDataset', data_root=data_root,
        data_prefix=dict(merged='Test_set/merged', alpha='Test_set/alpha',
                         trimap='Test_set/trimaps'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CompositionErrors')
test_evaluator = val_evaluator

epoch_iterations = 6000
max_iters = 30 * epoch_iterations
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=0.01),
                     paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.01)}))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, gamma=0.1,
                        milestones=[20 * epoch_iterations, 26 * epoch_iterations])]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=epoch_iterations)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=epoch_iterations,
                    save_best='SAD', rule='less', max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
