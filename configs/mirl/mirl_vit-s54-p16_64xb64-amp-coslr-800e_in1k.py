# MIRL pretraining of ViT-S-54: the ViT-B-48 recipe with the authors' small model
# (mirl_vit_small_patch16_depth54_dec384d1b): 54 x 384 encoder, 12 heads, six segments of
# 9 blocks, six 384-d decoders of one CrossBlock (12 heads).
_base_ = ['./mirl_vit-b48-p16_64xb64-amp-coslr-800e_in1k.py']

model = dict(
    embed_dims=384, num_layers=54, num_heads=12, out_indices=[8, 17, 26, 35, 44],
    decoder_embed_dims=384, decoder_depth=1, decoder_num_heads=12)
