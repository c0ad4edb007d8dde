# FRFU (2025; RRFU in the authors' experiments): gated offsets, 4 groups, 3 x 3 content-aware
# filter; the authors' defaults, which all their runs use. Unguided.
upsample_cfg = dict(type='FRFU', groups=4, sample_k=3)
