# Panoptic FPN R50, 1x COCO panoptic, mmdet's FPN_CARAFE topology: P6 is a 3x3 stride-2 conv on C5
# and enters the top-down path through a fourth upsampler; top-down upsampler: nearest. The neck
# re-initialises every conv (Xavier), as the authors' fork does. Base for the operators whose
# Panoptic FPN rows use four upsamplers; no published number for this row (the DySample paper's
# Panoptic FPN rows use mmdet's FPN: panoptic-fpn_r50_fpn-*).
_base_ = 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNCARAFEWithUpsampler', upsample_cfg=dict(type='NearestUpsample'),
                       upsampler_init='neck'))
