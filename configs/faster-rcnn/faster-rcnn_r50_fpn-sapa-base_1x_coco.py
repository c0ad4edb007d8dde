# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: journal SAPA-B (1x1-conv q / k,
# GroupNorm(32)), guided; the 'sapa' of the authors' detection fork. Everything else is mmdet's
# config. No published COCO number.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/sapa-base.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
