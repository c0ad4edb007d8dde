# Mask R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: SAPA-B (Lu et al., NeurIPS 2022; LayerNorm,
# embedding 32), guided. Everything else is mmdet's config. No published COCO number.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/sapa-b.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
