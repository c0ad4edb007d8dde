# Journal SAPA-B (tiny-smart/sapa sapa_base.SAPA): 1x1-conv q / k, GroupNorm(32), embedding 32; what
# the authors' OpenMMLab forks build for type='sapa'. Channels must be multiples of 32 (GroupNorm).
upsample_cfg = dict(type='SAPABase')
