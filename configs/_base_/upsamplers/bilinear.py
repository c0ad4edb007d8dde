# Bilinear interpolation (mmseg UPerHead's top-down default), align_corners=False; no parameters.
upsample_cfg = dict(type='BilinearUpsample')
