# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: nearest-neighbour interpolation (mmdet
# FPN's own; no parameters). Everything else is mmdet's config. Published (SAPA README): 37.4 AP,
# 41.53M parameters. The DySample paper's 37.5 / 46.8M is
# faster-rcnn_r50_fpncarafe-nearest_1x_coco.py.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/nearest.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
