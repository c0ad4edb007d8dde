# YOLOX-S, 300 epochs COCO;
# top-down upsampler of the YOLOX PAFPN:
# FADE (Lu et al., ECCV 2022; guided by the finer backbone feature).
# Inherits the folder's nearest config; everything else is mmdet's.
_base_ = ['./yolox_s_pafpn-nearest_8xb8-300e_coco.py', '../_base_/upsamplers/fade.py']
model = dict(neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
