# Any F.interpolate form, as mmdet's FPN applies its upsample_cfg (here: bilinear with aligned
# corners); no parameters. A neck's mmdet-style upsample_cfg without type becomes this.
upsample_cfg = dict(type='InterpolateUpsample', mode='bilinear', align_corners=True)
