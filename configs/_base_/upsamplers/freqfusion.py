# FreqFusion (Chen et al., TPAMI 2024) as the authors' detection FPN builds it
# (FreqFusionCARAFEFPN of their mmdetection folder): low-pass k 5, high-pass k 3, Hamming windows,
# compressed width (C + C_g) // 8, offset resampler with 4 groups and GroupNorm. Guided; it also
# enhances the finer level it merges into (FreqFusion.merge).
upsample_cfg = dict(type='FreqFusion', lowpass_kernel=5, highpass_kernel=3, compress_ratio=8,
                    semi_conv=True, comp_feat_upsample=True, feature_resample=True,
                    feature_resample_group=4, feature_resample_norm=True, hamming_window=True)
