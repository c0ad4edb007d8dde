# The baseline (published 41.09, tiny-smart/sapa) and the base of the other configs here: bilinear
# top-down path (no upsample_cfg: UPerHeadWithUpsampler is then exactly mmseg's UPerHead, which
# is also the fork's class default), test images resized to a multiple of 32 as the authors' x2
# heads require.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
          '../_base_/datasets/ade20k_test-size-divisor-32.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UPerHeadWithUpsampler'))
test_pipeline = {{_base_.ade20k_test_pipeline_size_divisor_32}}
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
