# Mask R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: FADE with its gate (Lu et al., ECCV 2022 /
# IJCV 2024), guided by the finer lateral. Everything else is mmdet's config. No published COCO
# number.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/fade.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
