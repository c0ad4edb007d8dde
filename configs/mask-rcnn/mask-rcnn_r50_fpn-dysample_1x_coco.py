# Mask R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: DySample (Liu et al., ICCV 2023; 'lp', 4
# groups, static scope). Everything else is mmdet's config. Published: 39.2 box / 35.4 mask AP.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/dysample.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
