# mmseg's UPerNet-R50 as a depth model: DepthEstimator, one-channel UPerDepthHeadWithUpsampler
# (sigmoid * 10 m, BTS's SiLog loss), no auxiliary head, depth padded with 0 (not valid).
_base_ = ['mmseg::_base_/models/upernet_r50.py']
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(
    type='DepthEstimator',
    data_preprocessor=dict(seg_pad_val=0, size=(480, 480)),
    decode_head=dict(type='UPerDepthHeadWithUpsampler', num_classes=1, max_depth=10.0,
                     loss_decode=dict(_delete_=True, type='ScaleInvariantLogLoss')),
    auxiliary_head=None)
