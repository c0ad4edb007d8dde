# MIRL pretraining of ViT-B-48 on ImageNet-1K: the authors' recipe (PRETRAIN.md, main_pretrain.py,
# lr_sched.py of russellllaputa/MIRL), written for mmengine's Runner.
#   model: 48 x 768 encoder, 12 heads, six segments of 8 blocks (out_indices [7, 15, 23, 31, 39]),
#          six 512-d decoders of two CrossBlocks (16 heads), mask ratio 0.75, normalised pixels;
#   optimiser: AdamW (0.9, 0.95), weight decay 0.05, none on 1-D parameters and biases;
#          lr = 1.5e-4 x 4096 / 256 = 2.4e-3 (effective batch 4096 = 64 GPUs x 64);
#   schedule: 40 warm-up epochs, then half-cosine to 0, per iteration; 800 epochs (the authors
#          pass --epochs 801); the 300-epoch variant sets max_epochs=300 (cosine over 260);
#   AMP on, no gradient clipping; RandomResizedCrop 224 (scale 0.2-1, bicubic) + flip, ImageNet
#          mean / std (main_pretrain.py).
# Data: data/imagenet/train/<wnid>/*.JPEG read by mmdynup's ImageNetLayout and numpy / cv2 / torch
# transforms (mmpretrain's pipeline needs torchvision, which does not install beside our torch).
default_scope = 'mmseg'  # what tools/train.py expects; every type below resolves from it
custom_imports = dict(imports=['mmdynup.mirl', 'mmdynup.datasets'], allow_failed_imports=False)

model = dict(
    type='mmdynup.MIRLPretrainer',
    img_size=224, patch_size=16, embed_dims=768, num_layers=48, num_heads=12, mlp_ratio=4.0,
    out_indices=[7, 15, 23, 31, 39],
    decoder_embed_dims=512, decoder_depth=2, decoder_num_heads=16,
    mask_ratio=0.75, use_memory=True, weight_norm_pred=True,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]))  # RGB, as LoadRGBImage reads

train_pipeline = [
    dict(type='mmdynup.LoadRGBImage'),
    dict(type='mmdynup.RandomResizedCrop', size=224, scale=(0.2, 1.0)),  # main_pretrain.py
    dict(type='mmdynup.RandomHorizontalFlip', prob=0.5),
    dict(type='mmdynup.PackClassificationInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=10, persistent_workers=True, pin_memory=True,  # PRETRAIN.md
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='mmdynup.ImageNetLayout', data_root='data/imagenet',
                 data_prefix=dict(img_path='train'), pipeline=train_pipeline))

max_epochs = 800
warmup_epochs = 40
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95), weight_decay=0.05),
    # 1-D tensors (LayerNorm weights, biases) get no decay; tokens keep it, as official.
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# The lr above is for 4096 images per step; mmengine rescales it for other batch sizes.
auto_scale_lr = dict(base_batch_size=4096, enable=True)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=20, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=True, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0, diff_rank_seed=True)
log_level = 'INFO'
load_from = None
resume = False
