# Mask R-CNN R101, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# DySample (Liu et al., ICCV 2023; 'lp', 4 groups, static scope).
# No published number for this row.
_base_ = [
    './mask-rcnn_r101_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/dysample.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
