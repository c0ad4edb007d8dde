# FADE, conference form (Lu et al., ECCV 2022; the authors' FADE_H2L.FADE): the journal FADE's
# function with the conference initialisation, scale 2 only. Guided.
upsample_cfg = dict(type='FADEECCV')
