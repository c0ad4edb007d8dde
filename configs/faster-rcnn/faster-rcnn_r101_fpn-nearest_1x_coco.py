# Faster R-CNN R101-FPN, 1x COCO; FPN top-down upsampler: nearest-neighbour interpolation (mmdet
# FPN's own; no parameters). Everything else is mmdet's config.
# Three upsamplers (mmdet FPN), the layout of the authors' detection fork (FPN_UPSAMPLE), whose
# checkpoints convert into it; the published row (39.4 AP, 65.8M) is
# faster-rcnn_r101_fpncarafe-nearest_1x_coco.py.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
    '../_base_/upsamplers/nearest.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
