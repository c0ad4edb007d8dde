# A tiny MIRL pretraining run for CPUs and tests: the released structure (six segments, six
# decoders with memory cross-attention, paired residual loss) at 32x32 with 8x8 patches, a 6 x 32
# encoder and 16-d decoders, trained for 40 iterations on 8 fixed synthetic images.
custom_imports = dict(imports=['mmdynup.mirl'], allow_failed_imports=False)

model = dict(
    type='mmdynup.MIRLPretrainer',
    img_size=32, patch_size=8, embed_dims=32, num_layers=6, num_heads=4,
    decoder_embed_dims=16, decoder_depth=1, decoder_num_heads=2, mask_ratio=0.75,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]))

train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    # InfiniteSampler: an iteration-based loop restarting a finite sampler sleeps 2 s each time.
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='MIRLSyntheticImages', num_images=8, img_size=32))

max_iters = 40
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=max_iters - 5, eta_min=0.0, by_epoch=False, begin=5,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
