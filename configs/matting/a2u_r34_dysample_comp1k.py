# DySample (lp, 4 groups) at each decoder stage; unguided (no published matting number).
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/dysample.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
