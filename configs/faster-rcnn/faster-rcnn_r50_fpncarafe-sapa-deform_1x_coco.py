# Faster R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# SAPA-deform (journal SAPA; 9 learned points, 4 groups), guided.
# Published: 39.2 AP (tiny-smart/sapa README).
_base_ = [
    './faster-rcnn_r50_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/sapa-deform.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
