# The papers' baseline: every stage resized straight to 1/4 bilinearly. upsample_cfg=None makes
# SegformerHeadWithUpsampler exactly mmseg's SegformerHead (same weights, same outputs).
_base_ = ['mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='SegformerHeadWithUpsampler', upsample_cfg=None))
