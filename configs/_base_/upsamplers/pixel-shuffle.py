# Sub-pixel convolution: 3x3 conv to C*s^2 channels, then pixel shuffle (the forks' 'pixelshuffle').
upsample_cfg = dict(type='PixelShuffleUpsample')
