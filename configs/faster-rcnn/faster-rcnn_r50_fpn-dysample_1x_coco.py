# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: DySample (Liu et al., ICCV 2023; 'lp', 4
# groups, static scope). Everything else is mmdet's config.
# Three upsamplers (mmdet FPN), the layout of the authors' detection fork (FPN_UPSAMPLE), whose
# checkpoints convert into it; the published row (38.6 AP) is
# faster-rcnn_r50_fpncarafe-dysample_1x_coco.py.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/dysample.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
