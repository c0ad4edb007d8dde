# BTS-R50-style depth model (mmseg DepthEstimator): torchvision ResNet-50 with its stride-2 stem
# feature, SkipConcatDepthHead with BTS's widths (x2 skip stages 1/32 -> 1/2 take the upsampler,
# guided by the encoder skip; the last x2 to full resolution stays nearest), sigmoid * 10 m, and
# BTS's SiLog loss (lambda 0.85 over the batch, x 10, gt > 0.1 m).
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='DepthEstimator',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_val=0, seg_pad_val=0, size=(480, 480)),  # depth 0 = not valid
    backbone=dict(
        type='ResNetWithStem', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
        style='pytorch', norm_cfg=norm_cfg, norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    decode_head=dict(
        type='SkipConcatDepthHead',
        in_channels=[64, 256, 512, 1024, 2048],
        stage_channels=[64, 128, 128, 512],
        channels=32,
        input_stride=2,
        num_convs=1,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ELU'),
        output_activation='sigmoid',
        max_depth=10.0,
        loss_decode=dict(type='ScaleInvariantLogLoss')),
    train_cfg=dict(),
    # mmseg 1.2.2 runs 'slide' as whole-image inference anyway (DepthEstimator.inference).
    test_cfg=dict(mode='whole'))
