# DySample+ (ICCV 2023): 'lp', 4 groups, dynamic scope. scope_bias=True as in the authors' OpenMMLab
# forks, whose released checkpoints carry scope.bias (the standalone repository has none).
upsample_cfg = dict(type='DySamplePlus', groups=4, scope_bias=True)
