# DySample (Liu et al., ICCV 2023): 'lp' style, 4 groups, static scope 0.25. Unguided.
upsample_cfg = dict(type='DySample', style='lp', groups=4, dyscope=False)
