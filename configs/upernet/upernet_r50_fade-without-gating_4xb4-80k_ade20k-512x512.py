# FADE as the authors' segmentation fork builds it for type='fade' (gating=False by default): the
# network behind the published FADE row (41.83; see README.md for its "+0.1M").
_base_ = ['./upernet_r50_bilinear_4xb4-80k_ade20k-512x512.py',
          '../_base_/upsamplers/fade-without-gating.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
