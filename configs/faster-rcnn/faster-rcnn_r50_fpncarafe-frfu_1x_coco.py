# Faster R-CNN R50, 1x COCO, mmdet's FPN_CARAFE topology with FRFU (authors' defaults) in its four
# top-down steps (4 x 21,074 parameters), every neck conv re-initialised with Xavier as the
# authors' FPN_CARAFE_Upsample does. Their run behind 39.1 AP: 2 GPUs x 4 images (8 per iteration;
# standard 16) with mmdet's auto-scaled lr (0.02 x 8 / 16 = 0.01), inputs padded to a multiple of
# 64, seed 0.
_base_ = ['./faster-rcnn_r50_fpncarafe-nearest_1x_coco.py', '../_base_/upsamplers/frfu.py']
model = dict(data_preprocessor=dict(pad_size_divisor=64),
             neck=dict(upsample_cfg={{_base_.upsample_cfg}}))
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=True, base_batch_size=16)
randomness = dict(seed=0)
