# The UPerNet + MIRL ViT-S-54 setting with DySample+ (dynamic scope) in every x2 step of the
# UPerHead top-down path, instead of bilinear interpolation. The snippet is the shared one
# (groups 4, scope_bias=True as the authors' OpenMMLab forks), as in configs/upernet.
_base_ = ['./upernet_mirl-vit-s54_8xb2-amp-160k_ade20k-512x512.py',
          '../_base_/upsamplers/dysample-plus.py']

model = dict(decode_head=dict(type='UPerHeadWithUpsampler',
                              upsample_cfg={{_base_.upsample_cfg}}))
