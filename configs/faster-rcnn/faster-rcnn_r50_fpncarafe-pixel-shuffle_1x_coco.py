# Faster R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# pixel shuffle (3x3 conv to 4C channels, then shuffle).
# Published: +9.4M parameters (DySample paper); the AP is not in shared/papers/RESULTS.md.
_base_ = [
    './faster-rcnn_r50_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/pixel-shuffle.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
