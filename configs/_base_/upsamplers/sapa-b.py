# SAPA-B (Lu et al., NeurIPS 2022): bilinear similarity q(LN y) . k(LN x), embedding 32 as in
# the authors' SegFormer-B1 runs (poppinace/sapa segformer/*.log: embedding_dim=32,
# q_mode='encoder_only').
upsample_cfg = dict(type='SAPAB', embedding_dim=32)
