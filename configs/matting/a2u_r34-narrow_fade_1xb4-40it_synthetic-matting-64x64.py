# A tiny matting run for CPUs and tests: the A2U network at narrow widths (ResNet-34 with 16-channel
# stem, ASPP and decoder at 32) with FADE, trained for 40 iterations on 32 x 32 crops of the
# synthetic 64 x 64 set that mmdynup.datasets.synthetic_matting writes:
#   python -c "from mmdynup.datasets.synthetic_matting import write_synthetic_matting as w; \
#              w('data/synthetic_matting')"
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/fade.py']
model = dict(
    backbone=dict(stem_channels=16, base_channels=16, norm_cfg=dict(type='BN'), norm_eval=False),
    encoder_channels=(16, 16, 32, 64), aspp_channels=32, decoder_channels=(32, 32, 32, 16),
    norm_cfg=dict(type='BN'), upsample_cfg={{_base_.upsample_cfg}}, pretrained=None)

data_root = 'data/synthetic_matting'
train_pipeline = [
    dict(type='LoadMattingImages'),
    dict(type='RandomMattingFlip', prob=0.5),
    dict(type='GenerateTrimap', kernel_sizes=(1, 5)),
    dict(type='CropAroundUnknown', crop_size=32),
    dict(type='CompositeImage'),
    dict(type='PackMattingInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

max_iters = 40
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3))
param_scheduler = []
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
