# FADE, conference form (Lu et al., ECCV 2022; FADE_H2L.FADE): a four-phase stride-2 encoder
# branch instead of the semi-shift convolution. Guided.
upsample_cfg = dict(type='FADEECCV')
