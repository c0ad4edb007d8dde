# FADE with the gate, as the FADE papers define it (the fork builds type='fade' without it: see
# upernet_r50_fade-without-gating_4xb4-80k_ade20k-512x512.py).
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
          '../_base_/upsamplers/fade.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UPerHeadWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
