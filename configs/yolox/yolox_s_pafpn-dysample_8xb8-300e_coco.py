# YOLOX-S, 300 epochs COCO;
# top-down upsampler of the YOLOX PAFPN:
# DySample (Liu et al., ICCV 2023; 'lp', 4 groups, static scope).
# Inherits the folder's nearest config; everything else is mmdet's.
_base_ = ['./yolox_s_pafpn-nearest_8xb8-300e_coco.py', '../_base_/upsamplers/dysample.py']
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
