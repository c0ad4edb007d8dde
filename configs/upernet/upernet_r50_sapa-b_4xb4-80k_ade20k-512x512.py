# SAPA-B as the authors' segmentation fork builds it for type='sapa': the journal code's SAPA-B
# (sapa_base.SAPA: 1x1-conv q / k, GroupNorm(32), embedding 32), registered here as SAPABase.
_base_ = ['./upernet_r50_bilinear_4xb4-80k_ade20k-512x512.py', '../_base_/upsamplers/sapa-base.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
