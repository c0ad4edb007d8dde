_base_ = ['mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py',
          '../_base_/upsamplers/fade.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='SegformerHeadWithUpsampler',
                              upsample_cfg={{_base_.upsample_cfg}}))
