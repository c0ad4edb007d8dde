# Panoptic FPN R50, 1x COCO, FPN_CARAFE topology with FreqFusion (Chen et al., TPAMI 2024) in all
# four top-down steps, as the authors' FreqFusionCARAFEFPN, whose panoptic run turns the
# resampler's GroupNorm off. Their neck Xavier-initialises every conv and then re-runs
# FreqFusion's init_weights, i.e. FreqFusion's own init (upsampler_init 'own'); their pipelines
# pad images to a multiple of 64. Published: 42.7 PQ.
_base_ = ['./panoptic-fpn_r50_fpncarafe-nearest_1x_coco.py']
model = dict(data_preprocessor=dict(pad_size_divisor=64), neck=dict(upsampler_init='own',
             upsample_cfg=dict(type='FreqFusion', lowpass_kernel=5, highpass_kernel=3,
                               compress_ratio=8, semi_conv=True, comp_feat_upsample=True,
                               feature_resample=True, feature_resample_group=4,
                               feature_resample_norm=False, hamming_window=True)))
