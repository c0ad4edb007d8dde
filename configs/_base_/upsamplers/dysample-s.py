# DySample-S (ICCV 2023): 'pl' style (pixel shuffle first), 4 groups, static scope. Unguided.
upsample_cfg = dict(type='DySampleS', groups=4)
