"""The cases of mmseg 1.2.2's own ``tests/test_models/test_heads/test_uper_head.py`` and
``test_segformer_head.py`` (rewritten here, same inputs and assertions) with our heads swapped in,
for ``upsample_cfg=None`` and for every registered upsampler.

Both upstream pyramids have a level more than 2 x its coarser neighbour (45 x 45 over 21 x 21;
127 x 127 images give 31 / 15 / 7 / 3): :meth:`Upsampler.upsample_like` reaches them by a
bilinear resize to ceil(H / 2) before the learned x2 step. Learned upsamplers run at a head width
of 32 (mmseg's cases use 2): several operators refuse fewer channels with a clear error (DySample
groups, GroupNorm(32) in A2U and SAPA base, FRFU groups, LDA-AQU heads).
"""
import pytest
import torch
from mmcv.cnn.bricks import ConvModule
from mmengine.utils.dl_utils.parrots_wrapper import SyncBatchNorm

from mmdynup import list_upsamplers
from mmdynup.seg import SegformerHeadWithUpsampler, UPerHeadWithUpsampler

UPSAMPLERS = [None] + list_upsamplers()
LEARNED_WIDTH = 32


def _config(name):
    return None if name is None else dict(type=name)


def _has_norm(head, sync_bn):
    return any(isinstance(m, ConvModule) and m.with_norm
               and (not sync_bn or isinstance(m.bn, SyncBatchNorm)) for m in head.modules())


def test_uper_head_construction_cases():
    with pytest.raises((AssertionError, TypeError, ValueError)):
        UPerHeadWithUpsampler(in_channels=4, channels=2, num_classes=19)  # must be a list
    head = UPerHeadWithUpsampler(in_channels=[4, 2], channels=2, num_classes=19,
                                 in_index=[-2, -1])
    assert not _has_norm(head, sync_bn=False)
    head = UPerHeadWithUpsampler(in_channels=[4, 2], channels=2, num_classes=19,
                                 norm_cfg=dict(type='SyncBN'), in_index=[-2, -1])
    assert _has_norm(head, sync_bn=True)


@pytest.mark.parametrize('name', UPSAMPLERS, ids=lambda n: str(n))
def test_uper_head_45_over_21(name):
    channels = 2 if name is None else LEARNED_WIDTH
    head = UPerHeadWithUpsampler(upsample_cfg=_config(name), in_channels=[4, 2],
                                 channels=channels, num_classes=19, in_index=[-2, -1]).eval()
    outputs = head([torch.randn(1, 4, 45, 45), torch.randn(1, 2, 21, 21)])
    assert outputs.shape == (1, head.num_classes, 45, 45)


def test_segformer_head_construction_cases():
    with pytest.raises((AssertionError, ValueError)):
        SegformerHeadWithUpsampler(in_channels=(1, 2, 3), in_index=(0, 1), channels=5,
                                   num_classes=2)


def _segformer_inputs(in_channels, size):
    shapes = [(size // 2 ** (i + 2), size // 2 ** (i + 2)) for i in range(len(in_channels))]
    return [torch.randn(1, c, *shape) for c, shape in zip(in_channels, shapes)]


@pytest.mark.parametrize('name', UPSAMPLERS, ids=lambda n: str(n))
def test_segformer_head_cases(name):
    in_channels = (32, 64, 160, 256)
    # mmseg's case uses channels=256; learned upsamplers run at LEARNED_WIDTH to stay fast.
    channels = 256 if name is None else LEARNED_WIDTH
    model = SegformerHeadWithUpsampler(upsample_cfg=_config(name), in_channels=in_channels,
                                       in_index=[0, 1, 2, 3], channels=channels,
                                       num_classes=19).eval()
    with pytest.raises(IndexError):
        model(_segformer_inputs(in_channels, 64)[:3])  # in_index must match the inputs
    for size in (64, 127):  # normal input; arbitrary shape (31, 15, 7, 3 at 127)
        output = model(_segformer_inputs(in_channels, size))
        assert output.shape == (1, model.num_classes, size // 4, size // 4)
