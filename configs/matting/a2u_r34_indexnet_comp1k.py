# IndexNet's index-guided upsampling at each decoder stage, guided by the stage's shortcut;
# decoder side only (the IndexNet / A2U networks also pool the encoder with the paired
# indices: see README.md).
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/indexnet.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
