# UPerNet + MIRL ViT-S-54 on ADE20K: the ViT-B-48 setting with the 384-wide backbone.
# Ours, not the paper's: out_indices [17, 26, 35, 53] (segment ends, see the B-48 config),
# UPerHead with 512 channels (mmseg's ViT-S / DeiT-S UPerNet width), layer decay 0.88.
_base_ = ['./upernet_mirl-vit-b48_8xb2-amp-160k_ade20k-512x512.py']

pretrained = 'pretrain/mirl_vit-s54_800e_mmseg.pth'
model = dict(
    backbone=dict(arch='vit-s54', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384, 384, 384, 384], channels=512),
    auxiliary_head=dict(in_channels=384))
