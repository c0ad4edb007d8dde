# ADE20K testing as in the runs behind the papers' ADE20K numbers: after mmseg's keep-ratio Resize
# to (2048, 512), each test image is resized to a multiple of 32 (mmseg's ResizeToMultiple, its
# stand-in for NVlabs' AlignedResize), so that every pyramid level is exactly half the next finer
# one. mmengine refuses a key defined in two bases, so a leaf config applies it itself:
#   test_pipeline = {{_base_.ade20k_test_pipeline_size_divisor_32}}
#   val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
#   test_dataloader = val_dataloader
ade20k_test_pipeline_size_divisor_32 = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
