# Transposed convolution, kernel 3, stride 2 (the forks' and mmdet FPN_CARAFE's 'deconv').
upsample_cfg = dict(type='DeconvUpsample')
