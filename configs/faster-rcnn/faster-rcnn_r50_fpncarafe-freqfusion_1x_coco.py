# Faster R-CNN R50, 1x COCO, FPN_CARAFE topology with FreqFusion (Chen et al., TPAMI 2024) in
# all four top-down steps, as the authors' FreqFusionCARAFEFPN: each merge is the high-pass-
# enhanced finer level plus the low-pass-upsampled, resampled coarser one. Their neck
# Xavier-initialises every conv and then re-runs FreqFusion's init_weights, i.e. FreqFusion's own
# init (upsampler_init 'own'); their pipelines pad images to a multiple of 64. Published: 39.4 AP.
_base_ = ['./faster-rcnn_r50_fpncarafe-nearest_1x_coco.py', '../_base_/upsamplers/freqfusion.py']
model = dict(data_preprocessor=dict(pad_size_divisor=64),
             neck=dict(upsample_cfg={{_base_.upsample_cfg}}, upsampler_init='own'))
