# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: SAPA-B (Lu et al., NeurIPS 2022;
# LayerNorm, embedding 32), guided. Everything else is mmdet's config. Published (SAPA README, its
# baseline 37.4): 37.8 AP.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/sapa-b.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
