# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: SAPA-deform (journal SAPA; 9 learned
# points, 4 groups), guided; the 'sapadeform' of the authors' detection fork. Everything else is
# mmdet's config. No published COCO number.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/sapa-deform.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
