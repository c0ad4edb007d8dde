# SAPA-G (Lu et al., NeurIPS 2022) at each decoder stage, guided by the stage's shortcut.
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/sapa-g.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
