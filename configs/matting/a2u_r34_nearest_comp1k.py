# Nearest-neighbour x2 at each decoder stage (no published matting number).
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/nearest.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
