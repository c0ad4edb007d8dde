# A2U upsampling (released adobe.yaml setting) at each decoder stage, guided by the stage's
# shortcut; decoder side only (the A2U network also downsamples its encoder with the paired
# kernels: see README.md).
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/a2u.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
