# SegFormer-B1 + FRFU, the authors' run behind 43.75 mIoU (yisi-xj/Relaxed-Receptive-Field-for-
# Adaptive-Upsampling ADE20K_segmentation/segformer_mit-b1-rrfu_160k_ade20k-512x512.py and its
# log): their SegformerHead_Upsample is mmseg 1.x's head (ConvModule projections, c1..c4), so
# head_form='mmseg'; decoder width 128 (mmseg's B1: 256); total batch 32 (2 GPUs x 16; the
# standard is 8 x 2), same lr; seed 0. Tested at multiples of 32 as their log shows (the base).
_base_ = ['./segformer_mit-b1_bilinear_8xb2-160k_ade20k-512x512.py',
          '../_base_/upsamplers/frfu.py']
model = dict(decode_head=dict(head_form='mmseg', channels=128,
                              upsample_cfg={{_base_.upsample_cfg}}))
train_dataloader = dict(batch_size=16)
randomness = dict(seed=0)
