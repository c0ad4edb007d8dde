# The ViT-B-48 pretraining recipe (mirl_vit-b48-p16_64xb64-amp-coslr-800e_in1k.py) at CPU size, on
# the synthetic ImageNet-layout set (mmdynup.datasets.write_synthetic_imagenet, 3 classes x 4
# training images of 40 x 40): the same data path, masking, six segments and decoders, optimiser
# and epoch-based warm-up + cosine schedule; a 6 x 32 encoder with 8 x 8 patches at 32 x 32, 16-d
# decoders, 4 images a step, 10 epochs of 3 steps, no AMP (CPU).
_base_ = ['./mirl_vit-b48-p16_64xb64-amp-coslr-800e_in1k.py']

model = dict(img_size=32, patch_size=8, embed_dims=32, num_layers=6, num_heads=4,
             out_indices=[0, 1, 2, 3, 4], decoder_embed_dims=16, decoder_depth=1,
             decoder_num_heads=2)
train_pipeline = [
    dict(type='mmdynup.LoadRGBImage'),
    dict(type='mmdynup.RandomResizedCrop', size=32, scale=(0.2, 1.0)),
    dict(type='mmdynup.RandomHorizontalFlip', prob=0.5),
    dict(type='mmdynup.PackClassificationInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root='data/synthetic_imagenet', pipeline=train_pipeline))
max_epochs = 10
warmup_epochs = 2
optim_wrapper = dict(type='OptimWrapper', _delete_=True,
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05),
                     paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(enable=False)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
