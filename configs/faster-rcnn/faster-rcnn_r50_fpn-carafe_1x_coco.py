# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: CARAFE (Wang et al., ICCV 2019; k_up 5,
# encoder 3, 64 compressed channels). Everything else is mmdet's config. Published (SAPA README,
# its baseline 37.4): 38.6 AP.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/carafe.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
