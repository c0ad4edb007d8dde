# CARAFE (mmcv CARAFEPack's defaults) at each decoder stage; unguided.
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/carafe.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
