# FADE-Lite (Lu et al., IJCV 2024; FADE_L2H.FADELite): depth-wise kernel encoder, with the gate.
# Guided.
upsample_cfg = dict(type='FADELite')
