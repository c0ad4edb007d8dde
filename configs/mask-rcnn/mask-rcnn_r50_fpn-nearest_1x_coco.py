# Mask R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: nearest-neighbour interpolation (mmdet FPN's
# own; no parameters). Everything else is mmdet's config. Published: 38.3 box / 34.7 mask AP.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/nearest.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
