# Mask R-CNN R101-FPN, 1x COCO; FPN top-down upsampler: DySample+ (Liu et al., ICCV 2023; 'lp', 4
# groups, dynamic scope with the forks' scope bias). Everything else is mmdet's config.
# Three upsamplers (mmdet FPN), the layout of the authors' detection fork (FPN_UPSAMPLE), whose
# checkpoints convert into it; the published row (41.0 / 36.8) is
# mask-rcnn_r101_fpncarafe-dysample-plus_1x_coco.py.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py',
    '../_base_/upsamplers/dysample-plus.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
