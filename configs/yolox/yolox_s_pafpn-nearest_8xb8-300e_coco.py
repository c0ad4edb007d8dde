# YOLOX-S, 300 epochs COCO, with mmdynup's YOLOXPAFPNWithUpsampler; upsampler: nearest (equal to
# mmdet's YOLOXPAFPN). mmdet's config gives the neck upsample_cfg=dict(scale_factor=2,
# mode='nearest'); _delete_ drops it so that the other yolox configs, which inherit this one,
# change only the upsampler type. Everything else is mmdet's config.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='YOLOXPAFPNWithUpsampler',
                       upsample_cfg=dict(_delete_=True, type='NearestUpsample')))
