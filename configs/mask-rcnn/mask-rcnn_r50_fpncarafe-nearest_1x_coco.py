# Mask R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology: P6 is a 3x3 stride-2 conv on C5 and
# enters the top-down path through a fourth upsampler; top-down upsampler: nearest.
# The network of the DySample paper's detection rows; the neck re-initialises every conv
# (Xavier), as the authors' fork does.
# Base of the mask-rcnn_r50_fpncarafe-* configs, which change only upsample_cfg.
# Published: 38.3 box / 34.7 mask AP (DySample paper).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNCARAFEWithUpsampler', upsample_cfg=dict(type='NearestUpsample'),
                        upsampler_init='neck'))
