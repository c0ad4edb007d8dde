# IndexNet as in FADE's SegFormer-B1 run (41.50 mIoU; poppinace/fade
# segformer/segformer.b1_indexnet.512x512.ade.160k.log prints six DepthwiseM2OIndexBlock(256),
# linear, 2 x 2 windows), not the snippet's holistic block.
_base_ = './segformer_mit-b1_bilinear_8xb2-160k_ade20k-512x512.py'
model = dict(decode_head=dict(upsample_cfg=dict(
    type='IndexNet', index_block='m2o', use_nonlinear=False, use_context=False)))
