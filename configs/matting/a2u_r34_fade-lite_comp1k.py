# FADE-Lite (poppinace/fade a2u_matting/fade_lite.yaml) at each decoder stage, guided by the
# stage's shortcut.
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/fade-lite.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
