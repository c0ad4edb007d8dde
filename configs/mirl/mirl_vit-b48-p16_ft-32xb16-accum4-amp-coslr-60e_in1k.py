# MIRL fine-tuning of ViT-B-48 on ImageNet-1K: the authors' recipe, for mmengine's Runner.
# Every value is read from russellllaputa/MIRL: FINETUNE.md (the ViT-B-48 script), main_finetune.py
# (defaults and transforms), engine_finetune.py, util/lr_sched.py, util/lr_decay.py, util/ema.py,
# models_vit.py; each line names its file. Published: 85.3 / 86.2 top-1 after 300 / 800 epochs of
# pretraining (README.md of the authors).
# Data: data/imagenet/{train,val}/<wnid>/*.JPEG, read by mmdynup's ImageNetLayout with numpy / cv2
# / torch transforms (mmpretrain's pipeline needs torchvision, which does not install here).
default_scope = 'mmseg'  # what tools/train.py expects; every type below resolves from it
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)

# The pretraining checkpoint converted to MIRLViT keys (tools/convert_checkpoint.py --source mirl).
pretrained = 'pretrain/mirl_vit-b48_800e_mmseg.pth'
num_classes = 1000  # main_finetune.py --nb_classes
batch_size = 16  # FINETUNE.md BATCH_SIZE (per GPU)
accumulative_counts = 4  # FINETUNE.md ACCUM_ITER
num_gpus = 32  # FINETUNE.md: 4 nodes x 8 GPUs
effective_batch = batch_size * accumulative_counts * num_gpus  # 2048 (FINETUNE.md)
base_lr = 7.5e-4  # FINETUNE.md --blr; lr = blr * effective batch / 256 (main_finetune.py)
layer_decay = 0.88  # FINETUNE.md --layer_decay
weight_decay = 0.05  # FINETUNE.md --weight_decay
max_epochs = 60  # FINETUNE.md --epochs
warmup_epochs = 30  # FINETUNE.md --warmup_epochs (ViT-B-48 script)
min_lr = 1e-6  # main_finetune.py --min_lr default
drop_path_rate = 0.0  # FINETUNE.md --drop_path 0.

model = dict(
    type='mmdynup.MIRLClassifier',
    # models_vit.vit_base_depth48_patch16 with global_pool=True (main_finetune.py default):
    # mean of the patch tokens -> fc_norm (LayerNorm 1e-6) -> head; no layer scale.
    backbone=dict(arch='vit-b48', img_size=224, patch_size=16,  # main_finetune.py --input_size
                  drop_path_rate=drop_path_rate,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    num_classes=num_classes,
    head_init_std=2e-5,  # main_finetune.py: trunc_normal_(model.head.weight, std=2e-5)
    data_preprocessor=dict(
        type='mmdynup.ClassificationDataPreprocessor',
        # main_finetune.py NormalizeImage: ImageNet mean / std (x 255), RGB.
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        num_classes=num_classes,
        label_smoothing=0.1,  # main_finetune.py --smoothing default (inside the mixup targets)
        erase_prob=0.25,  # FINETUNE.md --reprob; main_finetune.py: mode 'pixel', area 0.02-1/3
        mixup_alpha=0.8, cutmix_alpha=1.0,  # FINETUNE.md --mixup / --cutmix
        switch_prob=0.5))  # main_finetune.py --mixup_switch_prob default

train_pipeline = [
    dict(type='mmdynup.LoadRGBImage'),
    # main_finetune.py: RandomResizedCrop(224, bicubic) with torchvision's scale (0.08, 1).
    dict(type='mmdynup.RandomResizedCrop', size=224, scale=(0.08, 1.0)),
    dict(type='mmdynup.RandomHorizontalFlip', prob=0.5),
    # main_finetune.py --aa rand-m9-mstd0.5-inc1 (TimmAutoAugment, bicubic, ImageNet-mean fill).
    dict(type='mmdynup.RandAugment', num_ops=2, magnitude=9, magnitude_std=0.5),
    dict(type='mmdynup.PackClassificationInputs'),
]
test_pipeline = [
    dict(type='mmdynup.LoadRGBImage'),
    dict(type='mmdynup.ResizeShorterSide', size=256),  # main_finetune.py Resize(256, bicubic)
    dict(type='mmdynup.CenterCrop', size=224),  # main_finetune.py CenterCrop(224)
    dict(type='mmdynup.PackClassificationInputs'),
]
dataset_type = 'mmdynup.ImageNetLayout'
data_root = 'data/imagenet'
train_dataloader = dict(
    batch_size=batch_size, num_workers=10, persistent_workers=True,  # --num_workers default
    pin_memory=True, drop_last=True,  # --pin_mem; DistributedBatchSampler(drop_last=True)
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=batch_size, num_workers=10, persistent_workers=True, pin_memory=True,
    drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='val'),
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmdynup.TopKAccuracy', topk=(1, 5))  # engine_finetune.py acc1, acc5
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',  # engine_finetune.py paddle.amp.auto_cast
    accumulative_counts=accumulative_counts,
    # AdamW (0.9, 0.999), eps 1e-8: the defaults of the authors' optimizer/adamw.py.
    optimizer=dict(type='AdamW', lr=base_lr * effective_batch / 256, betas=(0.9, 0.999),
                   eps=1e-8, weight_decay=weight_decay),
    # util/lr_decay.py: lr x 0.88^(N + 1 - layer id); no decay on 1-D tensors, pos_embed, cls.
    constructor='LayerwiseLRDecayConstructor',
    paramwise_cfg=dict(decay_rate=layer_decay))
# util/lr_sched.py, per iteration: linear warm-up from 0, then half-cosine to min_lr x lr_scale
# (eta_min_ratio keeps min_lr scaled per layer group, as the authors'; LinearLR needs a start > 0).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-8, end_factor=1.0, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min_ratio=min_lr / (base_lr * effective_batch / 256), by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The lr above is for 32 GPUs x 16 images a step (x 4 accumulated); mmengine rescales it for
# other GPU counts.
auto_scale_lr = dict(base_batch_size=batch_size * num_gpus, enable=True)

# FINETUNE.md --use_ema: util/ema.py ModelEMA(decay 0.9998, 'threshold' warm-up, bias-corrected),
# updated after every optimizer step; validation and checkpoints use the averaged weights.
custom_hooks = [dict(type='EMAHook', ema_type='mmdynup.ThresholdWarmupEMA', decay=0.9998,
                     interval=accumulative_counts, update_buffers=True)]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='accuracy/top1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=True, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=888, diff_rank_seed=True)  # FINETUNE.md --seed 888 (+ rank)
log_processor = dict(by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
