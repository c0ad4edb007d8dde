# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: FADE without the gate, guided; the
# authors' detection fork builds this for its 'fade' configs (its gating defaults to False).
# Everything else is mmdet's config. The journal's FADE row (38.5 AP) is this operator in the
# FPN_CARAFE topology: faster-rcnn_r50_fpncarafe-fade-without-gating_1x_coco.py.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/fade-without-gating.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
