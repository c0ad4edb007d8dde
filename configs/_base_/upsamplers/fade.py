# FADE (Lu et al., ECCV 2022 / IJCV 2024), journal form with the gate: the FADE of the papers'
# SegFormer tables (poppinace/fade FADE_L2H.FADE). Guided by the high-resolution feature.
upsample_cfg = dict(type='FADE')
