_base_ = ['./segformer_mit-b1_bilinear_8xb2-160k_ade20k-512x512.py',
          '../_base_/upsamplers/dysample-s.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
