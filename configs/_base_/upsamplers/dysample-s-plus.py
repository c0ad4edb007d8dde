# DySample-S+ (ICCV 2023): 'pl' style, 4 groups, dynamic scope (with the forks' scope bias).
upsample_cfg = dict(type='DySampleSPlus', groups=4, scope_bias=True)
