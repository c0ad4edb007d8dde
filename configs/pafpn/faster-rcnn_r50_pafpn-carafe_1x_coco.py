# Faster R-CNN R50-PAFPN, 1x COCO;
# top-down upsampler of the PAFPN:
# CARAFE (Wang et al., ICCV 2019; k_up 5, encoder 3, 64 compressed channels).
# Everything else is mmdet's config.
_base_ = ['mmdet::pafpn/faster-rcnn_r50_pafpn_1x_coco.py', '../_base_/upsamplers/carafe.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='PAFPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
