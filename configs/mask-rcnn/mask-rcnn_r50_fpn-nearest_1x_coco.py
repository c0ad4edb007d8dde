# Mask R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: nearest-neighbour interpolation (mmdet FPN's
# own; no parameters). Everything else is mmdet's config.
# Three upsamplers (mmdet FPN), the layout of the authors' detection fork (FPN_UPSAMPLE), whose
# checkpoints convert into it; the published row (38.3 / 34.7) is
# mask-rcnn_r50_fpncarafe-nearest_1x_coco.py.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/nearest.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
