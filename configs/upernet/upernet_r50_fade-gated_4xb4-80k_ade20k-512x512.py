# FADE with its gate, as the FADE papers define it (the fork builds it only with gating=True; no
# published UPerNet row). The fork's own type='fade': ..._fade-without-gating_...
_base_ = ['./upernet_r50_bilinear_4xb4-80k_ade20k-512x512.py', '../_base_/upsamplers/fade.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
