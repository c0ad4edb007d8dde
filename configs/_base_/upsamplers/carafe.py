# CARAFE (Wang et al., ICCV 2019) as mmcv's CARAFEPack: k_up 5, encoder 3, 64 compressed channels.
upsample_cfg = dict(type='CARAFE')
