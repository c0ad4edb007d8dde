# SAPA-B as the authors' segmentation fork builds it for type='sapa': the journal code's SAPA-B
# (sapa_base.SAPA: 1x1-conv q / k, GroupNorm(32), embedding 32), registered here as SAPABase.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
          '../_base_/upsamplers/sapa-base.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UPerHeadWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
