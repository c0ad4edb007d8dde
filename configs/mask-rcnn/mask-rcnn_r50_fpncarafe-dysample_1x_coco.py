# Mask R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# DySample (Liu et al., ICCV 2023; 'lp', 4 groups, static scope).
# Published: 39.2 box / 35.4 mask AP (DySample paper).
_base_ = [
    './mask-rcnn_r50_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/dysample.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
