# SAPA-G (Lu et al., NeurIPS 2022): gated query, embedding 32 as in the authors' SegFormer-B1 runs
# (poppinace/sapa segformer/*.log: embedding_dim=32, q_mode='gate').
upsample_cfg = dict(type='SAPAG', embedding_dim=32)
