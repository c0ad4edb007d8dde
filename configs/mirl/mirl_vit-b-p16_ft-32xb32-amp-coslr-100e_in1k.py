# MIRL fine-tuning of the 12-block ViT-B on ImageNet-1K. The authors publish no ViT-B script
# (their FINETUNE.md covers ViT-B-48 and ViT-S-54), so the values are MAE's ViT-B recipe
# (facebookresearch/mae FINETUNE.md: 4 nodes x 8 GPUs x 32 = 1024 a step, 100 epochs, blr 5e-4,
# layer decay 0.65, drop path 0.1, weight decay 0.05, reprob 0.25, mixup 0.8, cutmix 1.0; MAE's
# main_finetune.py default of 5 warm-up epochs), run through MIRL's main_finetune.py, which adds
# the weight EMA that both MIRL scripts turn on (--use_ema) and seed 888.
# Published: 83.5 / 84.1 top-1 after 300 / 800 epochs of pretraining (README.md of the authors).
_base_ = ['./mirl_vit-b48-p16_ft-32xb16-accum4-amp-coslr-60e_in1k.py']

pretrained = 'pretrain/mirl_vit-b_800e_mmseg.pth'
batch_size = 32  # MAE FINETUNE.md --batch_size
accumulative_counts = 1  # MAE FINETUNE.md: 4 nodes, no accumulation
num_gpus = 32  # MAE FINETUNE.md: 4 nodes x 8 GPUs
effective_batch = batch_size * accumulative_counts * num_gpus  # 1024
base_lr = 5e-4  # MAE FINETUNE.md --blr
max_epochs = 100  # MAE FINETUNE.md --epochs
warmup_epochs = 5  # MAE main_finetune.py --warmup_epochs default
min_lr = 1e-6  # main_finetune.py --min_lr default

model = dict(backbone=dict(arch='vit-b', drop_path_rate=0.1,  # MAE FINETUNE.md --drop_path 0.1
                           init_cfg=dict(checkpoint=pretrained)))
train_dataloader = dict(batch_size=batch_size)
val_dataloader = dict(batch_size=batch_size)
test_dataloader = val_dataloader
optim_wrapper = dict(accumulative_counts=accumulative_counts,
                     optimizer=dict(lr=base_lr * effective_batch / 256),
                     paramwise_cfg=dict(decay_rate=0.65))  # MAE FINETUNE.md --layer_decay
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
