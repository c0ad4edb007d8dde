# MIRL fine-tuning of ViT-S-54 on ImageNet-1K: the ViT-B-48 recipe with the values of the authors'
# ViT-S-54 script (russellllaputa/MIRL FINETUNE.md): 2 nodes x 8 GPUs x 64 images x 2 accumulated
# = 2048 a step, 100 epochs, 20 warm-up epochs, drop path 0.1; blr 7.5e-4, layer decay 0.88,
# weight decay 0.05, reprob 0.25, mixup 0.8, cutmix 1.0, EMA and seed 888 as for ViT-B-48.
# Published: 84.4 / 84.8 top-1 after 300 / 800 epochs of pretraining (README.md of the authors).
_base_ = ['./mirl_vit-b48-p16_ft-32xb16-accum4-amp-coslr-60e_in1k.py']

pretrained = 'pretrain/mirl_vit-s54_800e_mmseg.pth'
batch_size = 64  # FINETUNE.md BATCH_SIZE
accumulative_counts = 2  # FINETUNE.md ACCUM_ITER
num_gpus = 16  # FINETUNE.md: 2 nodes x 8 GPUs
effective_batch = batch_size * accumulative_counts * num_gpus  # 2048
base_lr = 7.5e-4  # FINETUNE.md --blr
max_epochs = 100  # FINETUNE.md --epochs
warmup_epochs = 20  # FINETUNE.md --warmup_epochs
min_lr = 1e-6  # main_finetune.py --min_lr default

model = dict(backbone=dict(arch='vit-s54', drop_path_rate=0.1,  # models_vit; --drop_path 0.1
                           init_cfg=dict(checkpoint=pretrained)))
train_dataloader = dict(batch_size=batch_size)
val_dataloader = dict(batch_size=batch_size)
test_dataloader = val_dataloader
optim_wrapper = dict(accumulative_counts=accumulative_counts,
                     optimizer=dict(lr=base_lr * effective_batch / 256))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, end_factor=1.0, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min_ratio=min_lr / (base_lr * effective_batch / 256), by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=batch_size * num_gpus)
custom_hooks = [dict(type='EMAHook', ema_type='mmdynup.ThresholdWarmupEMA', decay=0.9998,
                     interval=accumulative_counts, update_buffers=True)]
