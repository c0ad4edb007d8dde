# Nearest-neighbour interpolation (mmdet FPN's top-down default); no parameters.
upsample_cfg = dict(type='NearestUpsample')
