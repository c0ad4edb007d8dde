# The baseline: bilinear top-down path. upsample_cfg=None makes UPerHeadWithUpsampler exactly
# mmseg's UPerHead (same weights, same outputs), which is also the fork's class default.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UPerHeadWithUpsampler', upsample_cfg=None))
