_base_ = ['./upernet_r50_bilinear_4xb4-80k_ade20k-512x512.py',
          '../_base_/upsamplers/dysample-plus.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
