# UPerNet + MIRL ViT-B-48 on ADE20K, 512x512 crops, 160k iterations: mmseg's MAE-B recipe
# (Feature2Pyramid neck, UPerHead 768 channels, FCN auxiliary head, AdamW lr 1e-4, 1500-iteration
# warm-up then poly, 8 GPUs x 2 images, slide inference) with the MIRL backbone.
# The MIRL paper publishes no segmentation setting: these values are ours, not the paper's --
#   * out_indices [15, 23, 31, 47]: ends of segments 2, 3, 4, 6 of the six pretraining segments
#     (for 12 blocks the same rule gives MAE-B's [3, 5, 7, 11]);
#   * layer-wise lr decay 0.88: the authors' ImageNet fine-tuning value (FINETUNE.md) instead of
#     MAE-B's 0.65, which would leave the first of 48 blocks at 0.65^49 ~ 7e-10 of the lr;
#   * drop_path_rate 0.1 and layer scale initialised to 1.0: mmseg's MAE-B recipe.
# The checkpoint is an official MIRL pretraining checkpoint converted by
# tools/convert_checkpoint.py (mmdynup.converters.mirl.mirl_to_mmseg).
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)

pretrained = 'pretrain/mirl_vit-b48_800e_mmseg.pth'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True, type='MIRLViT', arch='vit-b48', img_size=(512, 512),
        drop_path_rate=0.1, init_values=1.0,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

optim_wrapper = dict(
    constructor='LayerwiseLRDecayConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.88))
