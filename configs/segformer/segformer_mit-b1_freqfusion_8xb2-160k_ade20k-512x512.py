# SegFormer-B1 + FreqFusion in its concatenating form (the authors' README for SegFormer / SegNeXt
# heads): three FreqFusions, 1/32 -> 1/16 -> 1/8 -> 1/4, each upsampling the concatenation of all
# coarser projected stages (256, 512, 768 channels) guided by the next stage, which it high-pass
# enhances and puts in front. The authors release no SegFormer config and no SegFormer number;
# the operator arguments are those of their SegNeXt head (LightHamHeadFreqAware): compressed width
# (C + C_g) // 4, resampler with 4 groups, GroupNorm and 'sim' direction features (its copy's
# default), no Hamming window.
_base_ = ['./segformer_mit-b1_bilinear_8xb2-160k_ade20k-512x512.py']
model = dict(decode_head=dict(upsample_cfg=dict(
    type='FreqFusion', lowpass_kernel=5, highpass_kernel=3, compress_ratio=4, semi_conv=True,
    comp_feat_upsample=True, feature_resample=True, feature_resample_group=4,
    feature_resample_norm=True, direction_feat='sim', hamming_window=False)))
