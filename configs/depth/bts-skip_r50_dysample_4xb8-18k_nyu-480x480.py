_base_ = ['./_base_/nyu-depth_4xb8-18k.py', './_base_/bts-skip_r50.py',
          '../_base_/upsamplers/dysample.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
