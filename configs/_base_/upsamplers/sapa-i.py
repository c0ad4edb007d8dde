# SAPA-I (Lu et al., NeurIPS 2022): inner-product similarity of the LayerNorm'd features, no
# projections. Guided; guide and input channels must be equal.
upsample_cfg = dict(type='SAPAI')
