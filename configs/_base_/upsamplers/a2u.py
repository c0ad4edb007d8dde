# A2U (Dai et al., CVPR 2021): affinity-aware CARAFE kernels from the finer (guide) feature, the
# released adobe.yaml setting that FADE's SegFormer-B1 run logs (up_kernel_size 3,
# encode_kernel_size 6, shared filters, 1 group). Guide channels must be multiples of 32.
upsample_cfg = dict(type='A2U', up_kernel_size=3, encode_kernel_size=6, share=True, groups=1)
