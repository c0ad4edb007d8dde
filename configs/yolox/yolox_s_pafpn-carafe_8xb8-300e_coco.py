# YOLOX-S, 300 epochs COCO;
# top-down upsampler of the YOLOX PAFPN:
# CARAFE (Wang et al., ICCV 2019; k_up 5, encoder 3, 64 compressed channels).
# Inherits the folder's nearest config; everything else is mmdet's.
_base_ = ['./yolox_s_pafpn-nearest_8xb8-300e_coco.py', '../_base_/upsamplers/carafe.py']
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
