# Faster R-CNN R50, 1x COCO: mmdet's own CARAFE config (FPN_CARAFE, CARAFE k_up 5 / encoder 3 / 64
# compressed channels, images padded to multiples of 64, FPN_CARAFE's init) with our neck class,
# which runs CARAFE on a CPU too. Only custom_imports and the neck type change.
# Published (mmdet model zoo): 38.6 box AP.
_base_ = 'mmdet::carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py'
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNCARAFEWithUpsampler'))
