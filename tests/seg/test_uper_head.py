"""UPerHeadWithUpsampler: equals mmseg's UPerHead without an upsampler, wires the top-down steps as
the authors' fork does, runs every upsampler at sizes that are not multiples of 32, and refuses
bad configs at build time naming the config key."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.models.decode_heads import UPerHead
from mmseg.registry import MODELS

import mmdynup
from mmdynup.seg import UPerHeadWithUpsampler
from tests.seg.helpers import RecordingGuidedUpsample, pyramid_features, pyramid_sizes

IN_CHANNELS = [8, 12, 16, 24]
HEAD = dict(in_channels=IN_CHANNELS, in_index=[0, 1, 2, 3], channels=16, num_classes=3,
            pool_scales=(1, 2, 3, 6), dropout_ratio=0.1, norm_cfg=dict(type='BN'),
            align_corners=False)


def _perturb_buffers(module):
    """Non-trivial BN running statistics, so that eval mode uses them."""
    generator = torch.Generator().manual_seed(1)
    for name, buffer in module.named_buffers():
        if name.endswith('running_mean'):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
        elif name.endswith('running_var'):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)


@pytest.mark.parametrize('upsample_cfg', [None, dict(type='BilinearUpsample')],
                         ids=['none', 'BilinearUpsample'])
@pytest.mark.parametrize('image_size', [(64, 96), (375, 500)], ids=['64x96', '375x500'])
def test_without_a_learned_upsampler_equals_mmseg_uperhead(upsample_cfg, image_size):
    ours = UPerHeadWithUpsampler(upsample_cfg=upsample_cfg, **HEAD).double()
    upstream = UPerHead(**HEAD).double()
    assert list(ours.state_dict()) == list(upstream.state_dict())
    _perturb_buffers(upstream)
    ours.load_state_dict(upstream.state_dict())
    ours.eval(), upstream.eval()
    inputs = pyramid_features(IN_CHANNELS, *image_size)
    assert torch.equal(ours(inputs), upstream(inputs))


def test_top_down_steps_follow_the_fork():
    """Step i-1 upsamples the accumulated level i, guided by level i-1's raw lateral (before the
    addition), to that lateral's size; the PSP output is the top level."""
    head = UPerHeadWithUpsampler(upsample_cfg=dict(type=RecordingGuidedUpsample), **HEAD).eval()
    inputs = pyramid_features(IN_CHANNELS, 75, 100, dtype=torch.float32)
    head(inputs)
    raw = [conv(x) for conv, x in zip(head.lateral_convs, inputs)] + [head.psp_forward(inputs)]
    accumulated = raw[3]
    for step in (2, 1, 0):
        (x, guide), = head.upsamplers[step].calls
        torch.testing.assert_close(x, accumulated, rtol=0, atol=0)
        torch.testing.assert_close(guide, raw[step], rtol=0, atol=0)
        accumulated = raw[step] + head.upsamplers[step](x, guide)


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
def test_every_upsampler_handles_a_500x375_image(name):
    """Whole-image inference: stride-4..32 levels of 94x125, 47x63, 24x32, 12x16 (not x2 apart)."""
    channels = 32  # SAPABase's GroupNorm(32) needs a multiple of 32
    head = UPerHeadWithUpsampler(upsample_cfg=dict(type=name),
                                 **dict(HEAD, channels=channels)).eval()
    assert len(head.upsamplers) == 3
    inputs = pyramid_features(IN_CHANNELS, 375, 500, batch=1, dtype=torch.float32)
    with torch.no_grad():
        logits = head(inputs)
    assert logits.shape == (1, 3, *pyramid_sizes(375, 500)[0])
    assert torch.isfinite(logits).all()


def test_fusion_upsample_cfg_replaces_the_final_resize():
    head = UPerHeadWithUpsampler(upsample_cfg=dict(type='DySample'),
                                 fusion_upsample_cfg=dict(type='FADELite'), **HEAD).eval()
    assert len(head.fusion_upsampler.upsamplers) == 6
    inputs = pyramid_features(IN_CHANNELS, 75, 100, dtype=torch.float32)
    assert head(inputs).shape == (2, 3, 19, 25)
    # Default: no fusion upsamplers at all (the final resize stays bilinear, no extra keys).
    default = UPerHeadWithUpsampler(upsample_cfg=dict(type='DySample'), **HEAD)
    assert default.fusion_upsampler.upsamplers is None
    assert not any(key.startswith('fusion_upsampler') for key in default.state_dict())


def test_builds_the_same_under_another_default_scope():
    """The upsamplers come from mmdynup's own table, not from the active host registry."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = UPerHeadWithUpsampler(upsample_cfg=dict(type='CARAFE'), **HEAD)
    assert type(head.upsamplers[0]).__name__ == 'CARAFE'


@pytest.mark.parametrize('upsample_cfg, error, fragments', [
    (dict(type='Fade'), KeyError, ['upsample_cfg.type', "'Fade'", 'FADE']),
    (dict(type='carafe'), KeyError, ['upsample_cfg.type', 'CARAFE']),
    (dict(groups=4), KeyError, ['upsample_cfg', '"type"']),
    ('DySample', TypeError, ['upsample_cfg must be a dict']),
    (dict(type='DySample', guided=True), ValueError, ['upsample_cfg.guided', 'takes no guide']),
    (dict(type='FADE', guided=False), ValueError, ['upsample_cfg.guided', 'needs a guide']),
    (dict(type='FADE', in_channels=64), ValueError, ['upsample_cfg.in_channels=64',
                                                     'in_channels=16']),
    (dict(type='SAPAB', guide_channels=8), ValueError, ['upsample_cfg.guide_channels=8']),
    (dict(type='DySample', groups=5), ValueError, ['upsample_cfg', 'groups']),
    (dict(type='SAPABase'), ValueError, ['upsample_cfg', 'GroupNorm', 'in_channels=16']),
    (dict(type='SAPAB', out_channels=8), ValueError, ['upsample_cfg', 'output channels',
                                                      'out_channels']),
    (dict(type='CARAFE', up_kernel=4), ValueError, ['upsample_cfg', 'up_kernel']),
    (dict(type='DySample', not_an_option=1), TypeError, ['upsample_cfg', 'not_an_option']),
])
def test_bad_upsample_cfg_fails_at_build_naming_the_key(upsample_cfg, error, fragments):
    with pytest.raises(error) as raised:
        UPerHeadWithUpsampler(upsample_cfg=upsample_cfg, **HEAD)
    message = str(raised.value)
    assert 'UPerHeadWithUpsampler' in message
    for fragment in fragments:
        assert fragment in message


def test_bad_fusion_cfg_names_its_own_key():
    with pytest.raises(KeyError, match='fusion_upsample_cfg.type'):
        UPerHeadWithUpsampler(fusion_upsample_cfg=dict(type='NoSuchUpsampler'), **HEAD)


def test_registry_build_reports_the_key():
    """Built from a config through mmseg's registry (how a model config reaches the head)."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        with pytest.raises(KeyError, match='upsample_cfg.type'):
            MODELS.build(dict(type='UPerHeadWithUpsampler',
                              upsample_cfg=dict(type='NoSuchUpsampler'), **HEAD))
