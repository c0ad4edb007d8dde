# Faster R-CNN R101, 1x COCO, mmdet's FPN_CARAFE topology (see
# faster-rcnn_r50_fpncarafe-nearest_1x_coco.py);
# top-down upsampler: nearest. The R101 backbone as mmdet's faster-rcnn_r101_fpn_1x_coco.py.
# Published: 39.4 AP, 65.8M parameters (DySample paper).
_base_ = './faster-rcnn_r50_fpncarafe-nearest_1x_coco.py'
model = dict(backbone=dict(
    depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
