# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: A2U (Dai et al., CVPR 2021; up kernel 3,
# encode kernel 6, shared filters), guided by the finer lateral. Everything else is mmdet's config.
# Published (SAPA README, its baseline 37.4): 37.3 AP.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/a2u.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
