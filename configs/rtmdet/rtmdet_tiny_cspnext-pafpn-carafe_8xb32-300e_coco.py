# RTMDet-tiny, 300 epochs COCO;
# top-down upsampler of the CSPNeXt PAFPN:
# CARAFE (Wang et al., ICCV 2019; k_up 5, encoder 3, 64 compressed channels).
# Everything else is mmdet's config.
_base_ = ['mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py', '../_base_/upsamplers/carafe.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='CSPNeXtPAFPNWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
