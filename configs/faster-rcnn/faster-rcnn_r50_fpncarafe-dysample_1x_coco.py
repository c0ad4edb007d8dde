# Faster R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# DySample (Liu et al., ICCV 2023; 'lp', 4 groups, static scope).
# Published: 38.6 AP, +32.7K parameters (DySample paper).
_base_ = [
    './faster-rcnn_r50_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/dysample.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
