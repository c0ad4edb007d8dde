"""Depth heads with every registered upsampler: training step and odd-size prediction; which
tensors guide the upsamplers; equality with the upstream heads for plain interpolation; the
parameters SAPA's BTS-R50 table adds; the ResNet stem skip; bad input."""
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData

pytest.importorskip('mmseg')

import mmdynup  # noqa: E402
from mmseg.models.backbones import ResNet  # noqa: E402
from mmseg.models.decode_heads import UPerHead  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from mmdynup.depth import (ResNetWithStem, SkipConcatDepthHead,  # noqa: E402
                           UPerDepthHeadWithUpsampler)
from tests.conftest import REPO_ROOT  # noqa: E402
from tests.seg.helpers import RecordingGuidedUpsample  # noqa: E402

HEIGHT, WIDTH = 97, 129
SKIP_CHANNELS = [32, 32, 32, 64]          # strides 2, 4, 8, 16 (A2U needs multiples of 32)
STAGE_CHANNELS = [32, 32, 64]
LATERALS = [32, 64, 64]                   # the width of x entering each stage: any operator fits
UPER_CHANNELS = [32, 32, 64, 64]          # strides 4 .. 32


def _features(channels, first_stride, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, -(-HEIGHT // (first_stride * 2 ** i)),
                        -(-WIDTH // (first_stride * 2 ** i)), generator=generator)
            for i, c in enumerate(channels)]


def _samples(batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(HEIGHT, WIDTH), pad_shape=(HEIGHT, WIDTH),
                                             ori_shape=(HEIGHT, WIDTH)))
        depth = torch.rand(1, HEIGHT, WIDTH, generator=generator) * 9 + 0.5
        depth[:, :5] = 0  # padding / holes: not supervised
        sample.gt_depth_map = PixelData(data=depth)
        samples.append(sample)
    return samples


def _skip_head(upsample_cfg, **kwargs):
    torch.manual_seed(0)
    return SkipConcatDepthHead(in_channels=SKIP_CHANNELS, channels=16,
                               stage_channels=STAGE_CHANNELS, lateral_channels=LATERALS,
                               upsample_cfg=upsample_cfg, input_stride=2,
                               loss_decode=dict(type='ScaleInvariantLogLoss'), **kwargs)


def _uper_head(upsample_cfg, **kwargs):
    torch.manual_seed(0)
    return UPerDepthHeadWithUpsampler(in_channels=UPER_CHANNELS, in_index=[0, 1, 2, 3],
                                      channels=32, upsample_cfg=upsample_cfg, **kwargs)


HEADS = {'skip': (_skip_head, SKIP_CHANNELS, 2), 'upernet': (_uper_head, UPER_CHANNELS, 4)}


@pytest.mark.parametrize('head_name', sorted(HEADS))
@pytest.mark.parametrize('upsampler', mmdynup.list_upsamplers())
def test_every_upsampler_trains_and_predicts_at_an_odd_size(head_name, upsampler):
    build, channels, stride = HEADS[head_name]
    head = build(dict(type=upsampler))
    head.train()
    losses = head.loss(_features(channels, stride), _samples(), train_cfg={})
    assert list(losses) == ['loss_silog'] and torch.isfinite(losses['loss_silog'])
    losses['loss_silog'].backward()
    grads = [p.grad for p in head.upsamplers.parameters()]
    assert all(g is not None for g in grads), 'an upsampler parameter got no gradient'
    head.eval()
    with torch.no_grad():
        depth = head.predict(_features(channels, stride, batch=1), [_samples(1)[0].metainfo],
                             test_cfg={})
    assert depth.shape == (1, 1, HEIGHT, WIDTH)
    assert (depth > 0).all() and (depth <= head.max_depth).all()


def test_guided_upsamplers_are_guided_by_the_encoder_skips():
    head = SkipConcatDepthHead(in_channels=SKIP_CHANNELS, channels=16,
                               stage_channels=STAGE_CHANNELS, input_stride=2,
                               upsample_cfg=dict(type=RecordingGuidedUpsample))
    features = _features(SKIP_CHANNELS, 2)
    head(features)
    for i, upsampler in enumerate(head.upsamplers):
        (x, guide), = upsampler.calls
        assert guide is features[i]  # the raw encoder feature at the target stride
        assert x.shape[1] == (STAGE_CHANNELS + [SKIP_CHANNELS[-1]])[i + 1]


def test_default_interpolation_equals_the_nearest_upsampler():
    features = _features(SKIP_CHANNELS, 2)
    default, nearest = _skip_head(None), _skip_head(dict(type='NearestUpsample'))
    nearest.load_state_dict(default.state_dict())
    torch.testing.assert_close(default(features), nearest(features), atol=0, rtol=0)


def test_uper_depth_head_equals_mmseg_uperhead_with_the_activation():
    features = _features(UPER_CHANNELS, 4)
    ours = _uper_head(None).eval()
    upstream = UPerHead(in_channels=UPER_CHANNELS, in_index=[0, 1, 2, 3], channels=32,
                        num_classes=1, out_channels=1, threshold=0.5).eval()
    upstream.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(features), torch.sigmoid(upstream(features)) * 10.0,
                               atol=0, rtol=0)


def test_relu_activation_and_loss_resize_to_the_ground_truth():
    head = _uper_head(None, output_activation='relu', min_depth=0.25)
    features = _features(UPER_CHANNELS, 4)
    depth = head(features)
    assert depth.shape[2:] == features[0].shape[2:] and (depth >= 0.25).all()
    assert head.threshold is None
    assert torch.isfinite(head.loss_by_feat(depth, _samples())['loss_silog'])


def _bts_r50_decoder_parameters(upsample_cfg):
    head = SkipConcatDepthHead(in_channels=[64, 256, 512, 1024, 2048],
                               stage_channels=[64, 128, 128, 512], channels=32, num_convs=1,
                               upsample_cfg=upsample_cfg)
    return sum(p.numel() for p in head.parameters())


@pytest.mark.parametrize('snippet, published', [('carafe', 0.41), ('sapa-b', 0.16),
                                                ('sapa-g', 0.25)])
def test_bts_r50_positions_add_the_parameters_of_sapas_table(snippet, published):
    """SAPA's README (BTS R50, NYU): CARAFE +0.41M, SAPA-B +0.16M, SAPA-G +0.25M over nearest,
    with the settings of our upsampler snippets (SAPA: embedding 32)."""
    upsample_cfg = Config.fromfile(str(REPO_ROOT / f'configs/_base_/upsamplers/{snippet}.py'))
    added = _bts_r50_decoder_parameters(dict(upsample_cfg.upsample_cfg)) - \
        _bts_r50_decoder_parameters(None)
    assert round(added / 1e6, 2) == published


def test_resnet_with_stem_returns_the_stride_2_stem_then_mmseg_stages():
    torch.manual_seed(0)
    ours = ResNetWithStem(depth=18, base_channels=8, stem_channels=8)
    upstream = ResNet(depth=18, base_channels=8, stem_channels=8)
    upstream.load_state_dict(ours.state_dict())
    ours.eval(), upstream.eval()  # mmseg's ResNet.train returns None: no chaining
    image = torch.randn(1, 3, HEIGHT, WIDTH)
    stem, *stages = ours(image)
    assert stem.shape == (1, 8, 49, 65)
    for got, expected in zip(stages, upstream(image)):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert not ours.maxpool._forward_pre_hooks  # the recording hook is gone after forward


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(num_classes=19), ValueError, 'num_classes=19 is a segmentation setting'),
    (dict(ignore_index=255), ValueError, 'ignore_index=255'),
    (dict(output_activation='exp'), ValueError, 'output_activation'),
    (dict(min_depth=20.0), ValueError, 'min_depth < max_depth'),
    (dict(loss_decode='SiLogLoss'), TypeError, 'loss_decode must be a dict'),
])
def test_bad_head_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _uper_head(None, **kwargs)


@pytest.mark.parametrize('kwargs, match', [
    (dict(stage_channels=[8]), 'one width per skip stage'),
    (dict(input_stride=3), 'power of 2'),
    (dict(lateral_channels=[8]), 'lateral_channels'),
])
def test_bad_skip_head_arguments(kwargs, match):
    arguments = dict(in_channels=SKIP_CHANNELS, channels=8, stage_channels=STAGE_CHANNELS)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SkipConcatDepthHead(**arguments)


def test_missing_depth_ground_truth_is_reported():
    sample = SegDataSample(metainfo=dict(img_shape=(HEIGHT, WIDTH)))
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, HEIGHT, WIDTH, dtype=torch.long))
    head = _uper_head(None)
    with pytest.raises(KeyError, match='LoadDepthAnnotation'):
        head.loss(_features(UPER_CHANNELS, 4, batch=1), [sample], train_cfg={})


@pytest.mark.parametrize('module', ['mmdynup.depth.skip_depth_head',
                                    'mmdynup.depth.uper_depth_head'])
def test_docstring_examples_run(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
