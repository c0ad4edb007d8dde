# The UPerNet + MIRL ViT-B-48 setting with FADE in every x2 step of the UPerHead top-down path
# (guided by the finer lateral), instead of bilinear interpolation.
_base_ = ['./upernet_mirl-vit-b48_8xb2-amp-160k_ade20k-512x512.py']

model = dict(decode_head=dict(type='UPerHeadWithUpsampler', upsample_cfg=dict(type='FADE')))
