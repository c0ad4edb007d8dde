# Faster R-CNN R50-FPN, 1x COCO; FPN top-down upsampler: IndexNet (Lu et al., ICCV 2019;
# HolisticIndexBlock, nonlinear, context), guided by the finer lateral. Everything else is mmdet's
# config. Published (SAPA README, its baseline 37.4): 37.6 AP at +6.30M parameters.
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/upsamplers/indexnet.py',
]
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
