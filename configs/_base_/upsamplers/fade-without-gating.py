# FADE without the gate (poppinace/fade SemiShiftUp): what the authors' OpenMMLab forks build for
# type='fade' (their build_upsampler defaults to gating=False). Guided.
upsample_cfg = dict(type='SemiShiftUp')
