# Mask R-CNN R50, 1x COCO, FPN_CARAFE topology with LDA-AQU (Du et al., ACM MM 2024) in all four
# top-down steps, the neck of the authors' FPN_LAU (as in their Faster R-CNN config); LDA-AQU's
# own init (upsampler_init 'own'), images padded to a multiple of 64. The authors' repository has
# no Mask R-CNN config: mmdet's recipe otherwise (8 GPUs x 2 images, lr 0.02).
# Published: only the abstract's "+1.5 AP" over the baseline.
_base_ = ['./mask-rcnn_r50_fpncarafe-nearest_1x_coco.py', '../_base_/upsamplers/lda-aqu.py']
model = dict(data_preprocessor=dict(pad_size_divisor=64),
             neck=dict(upsample_cfg={{_base_.upsample_cfg}}, upsampler_init='own'))
