# Mask R-CNN R50, 1x COCO: mmdet's own CARAFE config (FPN_CARAFE with CARAFE, images padded to
# multiples of 64, FPN_CARAFE's init, CARAFE instead of the mask head's deconvolution) with our
# neck and mask head classes. Only custom_imports and the two types change.
# Published (mmdet model zoo): 39.3 box / 35.6 mask AP.
_base_ = 'mmdet::carafe/mask-rcnn_r50_fpn-carafe_1x_coco.py'
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(neck=dict(type='FPNCARAFEWithUpsampler'),
             roi_head=dict(mask_head=dict(type='FCNMaskHeadWithUpsampler')))
