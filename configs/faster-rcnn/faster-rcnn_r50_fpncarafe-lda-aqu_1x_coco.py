# Faster R-CNN R50, 1x COCO, FPN_CARAFE topology with LDA-AQU (Du et al., ACM MM 2024) in all four
# top-down steps: the authors' FPN_LAU is mmdet's FPN_CARAFE building LDA_AQU(256, ...) for each
# step, P6 (stride-2 conv on C5) included. Their neck Xavier-initialises every conv and then runs
# LDA_AQU.init_weights (zero last offset conv): LDA-AQU's own init, upsampler_init 'own'. Their
# recipe (configs/lda_aqu/fasterrcnn_r50_lau.py): images padded to a multiple of 64, 4 GPUs x 2
# images with lr 0.01 (run on 4 GPUs; base_batch_size 8 for --auto-scale-lr).
# Published: 39.2 AP (the released checkpoint).
_base_ = ['./faster-rcnn_r50_fpncarafe-nearest_1x_coco.py', '../_base_/upsamplers/lda-aqu.py']
model = dict(data_preprocessor=dict(pad_size_divisor=64),
             neck=dict(upsample_cfg={{_base_.upsample_cfg}}, upsampler_init='own'))
optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(base_batch_size=8)
