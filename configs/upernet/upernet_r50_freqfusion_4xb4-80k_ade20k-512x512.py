# UPerNet-R50 + FreqFusion in the three FPN top-down steps, merged as the authors' FPN merges
# (enhanced finer level + upsampled coarser one), with their detection FPN's arguments
# (configs/_base_/upsamplers/freqfusion.py: compressed width (512 + 512) // 8 = 128 here). No
# published UPerNet run of FreqFusion.
_base_ = ['./upernet_r50_bilinear_4xb4-80k_ade20k-512x512.py',
          '../_base_/upsamplers/freqfusion.py']
model = dict(decode_head=dict(upsample_cfg={{_base_.upsample_cfg}}))
