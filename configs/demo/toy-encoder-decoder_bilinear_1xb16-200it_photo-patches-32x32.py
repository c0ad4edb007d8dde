# FADE's detail-sensitive toy task: reconstruct 32 x 32 grey patches of matplotlib's sample
# photographs through a 4-channel bottleneck at stride 8 (mmdynup/toy/reconstruction.py), with the
# toy encoder-decoder of mmdynup/toy/network.py. tools/demo.py swaps upsample_cfg for each snippet
# of configs/_base_/upsamplers.
_base_ = ['./toy_schedule_adam-200it.py', '../_base_/upsamplers/bilinear.py']

model = dict(type='ToyReconstructor', in_channels=1, widths=[32, 32, 32, 32],
             bottleneck_channels=4, upsample_cfg={{_base_.upsample_cfg}})

train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='PhotoPatches', split='train', patch_size=32, num_patches=4096))
test_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='PhotoPatches', split='val', patch_size=32))
test_evaluator = dict(type='ReconstructionMetric')
