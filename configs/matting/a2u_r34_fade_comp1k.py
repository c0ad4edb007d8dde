# FADE with its gate (poppinace/fade a2u_matting/fade.yaml) at each decoder stage, guided by
# the stage's shortcut.
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/fade.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
