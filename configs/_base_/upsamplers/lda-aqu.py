# LDA-AQU (Du et al., ACM MM 2024): local deformable attention, query/key width C / 4, 1 head,
# 2 offset groups, 3 x 3 points per output pixel, 3 x 3 last offset conv, offsets bounded by 11
# output px, learned key bias: the upsample_cfg of the authors' FPN_LAU configs (their only
# released setting; nh and rpb at the class defaults). Unguided; any real scale.
upsample_cfg = dict(type='LDAAQU', reduction_factor=4, num_heads=1, encoder_kernel=3, up_kernel=3,
                    offset_groups=2, offset_range=11.0, key_bias=True)
