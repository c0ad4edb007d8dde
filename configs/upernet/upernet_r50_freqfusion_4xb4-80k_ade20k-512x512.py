# UPerNet-R50 + FreqFusion in the three FPN top-down steps, merged as the authors' FPN merges
# (enhanced finer level + upsampled coarser one), with their detection FPN's arguments
# (configs/_base_/upsamplers/freqfusion.py: compressed width (512 + 512) // 8 = 128 here). No
# published UPerNet run of FreqFusion.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py',
          '../_base_/upsamplers/freqfusion.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UPerHeadWithUpsampler', upsample_cfg={{_base_.upsample_cfg}}))
