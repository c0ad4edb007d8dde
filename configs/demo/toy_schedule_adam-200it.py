# Schedule and runtime of the demo's toy study (tools/demo.py): Adam 1e-3 with a linear decay to
# 0 over 200 iterations, no validation during training (tools/demo.py tests once at the end), one
# checkpoint at the end (for tools/train.py; the demo keeps none). mmseg's runtime:
# default_scope, visualizer, log processor.
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmdynup', 'mmdynup.toy'], allow_failed_imports=False)

max_iters = 200
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
randomness = dict(seed=0, deterministic=False)
