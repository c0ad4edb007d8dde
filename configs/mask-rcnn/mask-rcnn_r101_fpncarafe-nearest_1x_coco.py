# Mask R-CNN R101, 1x COCO, mmdet's FPN_CARAFE topology (see
# mask-rcnn_r50_fpncarafe-nearest_1x_coco.py);
# top-down upsampler: nearest. The R101 backbone as mmdet's mask-rcnn_r101_fpn_1x_coco.py.
# Published: 40.0 box / 36.0 mask AP (DySample paper).
_base_ = './mask-rcnn_r50_fpncarafe-nearest_1x_coco.py'
model = dict(backbone=dict(
    depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
