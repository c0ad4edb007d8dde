# The ViT-B-48 fine-tuning recipe (mirl_vit-b48-p16_ft-32xb16-accum4-amp-coslr-60e_in1k.py) at CPU
# size, on the synthetic ImageNet-layout set (3 classes, 40 x 40 images): the same data path
# (RandomResizedCrop, flip, RandAugment m9, random erasing, mixup / cutmix, label smoothing), layer
# decay, warm-up + cosine and EMA; the 6 x 32 encoder of
# mirl_vit-tiny-d6_1xb4-10e_synthetic-in1k-32x32.py, 8 x 8 patches at 32 x 32, 6 images a step,
# 8 epochs of 2 steps, no gradient accumulation (mmengine warns when a schedule step precedes
# the first optimizer step), no AMP (CPU). Test: shorter side 36, centre crop 32.
_base_ = ['./mirl_vit-b48-p16_ft-32xb16-accum4-amp-coslr-60e_in1k.py']

# The tiny pretraining checkpoint converted with tools/convert_checkpoint.py --source mirl.
pretrained = 'pretrain/mirl_vit-tiny-d6_synthetic_mmseg.pth'
num_classes = 3
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=6, num_heads=4), img_size=32,
                  patch_size=8, init_cfg=dict(checkpoint=pretrained)),
    num_classes=num_classes,
    data_preprocessor=dict(num_classes=num_classes))
train_pipeline = [
    dict(type='mmdynup.LoadRGBImage'),
    dict(type='mmdynup.RandomResizedCrop', size=32, scale=(0.08, 1.0)),
    dict(type='mmdynup.RandomHorizontalFlip', prob=0.5),
    dict(type='mmdynup.RandAugment', num_ops=2, magnitude=9, magnitude_std=0.5),
    dict(type='mmdynup.PackClassificationInputs'),
]
test_pipeline = [
    dict(type='mmdynup.LoadRGBImage'),
    dict(type='mmdynup.ResizeShorterSide', size=36),
    dict(type='mmdynup.CenterCrop', size=32),
    dict(type='mmdynup.PackClassificationInputs'),
]
data_root = 'data/synthetic_imagenet'
train_dataloader = dict(batch_size=6, num_workers=0, persistent_workers=False, pin_memory=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=6, num_workers=0, persistent_workers=False, pin_memory=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
max_epochs = 8
warmup_epochs = 2
accumulative_counts = 1
base_lr = 2e-3  # the lr itself (no batch scaling at this size)
optim_wrapper = dict(type='OptimWrapper', _delete_=True, accumulative_counts=accumulative_counts,
                     optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8,
                                    weight_decay=0.05),
                     constructor='LayerwiseLRDecayConstructor',
                     paramwise_cfg=dict(decay_rate=0.88))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, end_factor=1.0, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min_ratio=1e-3,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(enable=False)
custom_hooks = [dict(type='EMAHook', ema_type='mmdynup.ThresholdWarmupEMA', decay=0.9998,
                     interval=accumulative_counts, update_buffers=True)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
