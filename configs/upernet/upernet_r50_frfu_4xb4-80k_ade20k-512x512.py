# UPerNet-R50 + FRFU (authors' defaults) in the three top-down steps; FRFU publishes no UPerNet run.
_base_ = ['./upernet_r50_bilinear_4xb4-80k_ade20k-512x512.py', '../_base_/upsamplers/frfu.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
