# Faster R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# DySample+ (Liu et al., ICCV 2023; 'lp', 4 groups, dynamic scope with the forks' bias).
# Published: 38.7 AP, +65.5K parameters (DySample paper).
_base_ = [
    './faster-rcnn_r50_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/dysample-plus.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
