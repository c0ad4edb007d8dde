# The bilinear baseline of the FADE / SAPA matting tables (the authors' x2 nn.Upsample,
# bilinear, align_corners=False) at each of the four decoder stages.
_base_ = ['./_base_/a2u_r34_comp1k.py', '../_base_/upsamplers/bilinear.py']
model = dict(upsample_cfg={{_base_.upsample_cfg}})
