# The demo's dynamic upsampler: the same model, its head reaching 1/4 through x2 FADE cascades
# guided by the encoder stages (the FADE/SAPA SegFormer recipe).
_base_ = ['./segformer_mit-tiny_bilinear_1xb8-1200it_synthetic-ade-128x128.py']
model = dict(decode_head=dict(upsample_cfg=dict(type='FADE')))
