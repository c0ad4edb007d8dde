# Faster R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology (four top-down upsamplers); upsampler:
# FADE without its gate, guided by the finer lateral: the
# network the authors' forks build for 'fade' (gating defaults to False).
# Published: 38.5 AP (the journal's FADE row, issue 19); not in shared/papers/RESULTS.md.
_base_ = [
    './faster-rcnn_r50_fpncarafe-nearest_1x_coco.py',
    '../_base_/upsamplers/fade-without-gating.py',
]
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
