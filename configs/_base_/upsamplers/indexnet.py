# IndexNet (Lu et al., ICCV 2019): decoder index times nearest upsampling, guided by the finer
# feature. HolisticIndexBlock, nonlinear, with context: the block behind every IndexNet parameter
# count of SAPA's README (2,100,224 per block at 256 channels: +6.30M for an FPN's three steps,
# +2.10M for Mask2Former's one, +12.60M for SegFormer's six). FADE's SegFormer-B1 run used the
# depthwise m2o block instead (its config says so).
upsample_cfg = dict(type='IndexNet', index_block='holistic', use_nonlinear=True, use_context=True)
