"""SegformerHeadWithUpsampler: equals mmseg's SegformerHead without an upsampler, and otherwise
follows FADE's SegFormer head (six x2 upsamplers, each guided by the stage it lands on)."""
import pytest
import torch
from mmseg.models.decode_heads import SegformerHead

import mmdynup
from mmdynup.seg import PyramidUpsampler, SegformerHeadWithUpsampler, cascade_steps
from tests.seg.helpers import RecordingGuidedUpsample, pyramid_features, pyramid_sizes

IN_CHANNELS = [8, 12, 16, 24]
HEAD = dict(in_channels=IN_CHANNELS, in_index=[0, 1, 2, 3], channels=16, num_classes=3,
            dropout_ratio=0.1, norm_cfg=dict(type='BN'), align_corners=False)


def test_cascade_steps_are_the_authors_order():
    """FADE's segformer_head.py: upsamplers[0..2] take c4 down to c3, c2, c1; [3..4] take c3 to
    c2, c1; [5] takes c2 to c1 (levels counted from 0 = c1)."""
    assert cascade_steps(4) == [(3, 2), (3, 1), (3, 0), (2, 1), (2, 0), (1, 0)]
    assert cascade_steps(1) == []
    assert len(cascade_steps(5)) == 10


@pytest.mark.parametrize('image_size', [(64, 96), (375, 500)], ids=['64x96', '375x500'])
def test_without_upsample_cfg_equals_mmseg_segformerhead(image_size):
    ours = SegformerHeadWithUpsampler(upsample_cfg=None, **HEAD).double()
    upstream = SegformerHead(**HEAD).double()
    assert list(ours.state_dict()) == list(upstream.state_dict())
    ours.load_state_dict(upstream.state_dict())
    ours.eval(), upstream.eval()
    inputs = pyramid_features(IN_CHANNELS, *image_size)
    assert torch.equal(ours(inputs), upstream(inputs))


@pytest.mark.parametrize('name', ['FADE', 'DySample'])
def test_cascades_match_the_authors_formulas(name):
    """The head's forward against the cascade written out as in FADE's SegFormer head."""
    head = SegformerHeadWithUpsampler(upsample_cfg=dict(type=name), **HEAD).double().eval()
    inputs = pyramid_features(IN_CHANNELS, 75, 100)
    c1, c2, c3, c4 = (conv(x) for conv, x in zip(head.convs, inputs))
    up = head.pyramid_upsampler.upsamplers

    def step(index, x, finer):
        guide = finer if up[index].requires_guide else None
        return up[index](x, guide=guide, size=finer.shape[-2:])

    c4 = step(2, step(1, step(0, c4, c3), c2), c1)
    c3 = step(4, step(3, c3, c2), c1)
    c2 = step(5, c2, c1)
    expected = head.cls_seg(head.fusion_conv(torch.cat([c1, c2, c3, c4], dim=1)))
    torch.testing.assert_close(head(inputs), expected, rtol=0, atol=0)


def test_every_step_is_guided_by_the_projected_stage_it_lands_on():
    head = SegformerHeadWithUpsampler(upsample_cfg=dict(type=RecordingGuidedUpsample),
                                      **HEAD).eval()
    inputs = pyramid_features(IN_CHANNELS, 75, 100, dtype=torch.float32)
    head(inputs)
    projected = [conv(x) for conv, x in zip(head.convs, inputs)]
    for (source, target), upsampler in zip(cascade_steps(4), head.pyramid_upsampler.upsamplers):
        (x, guide), = upsampler.calls
        torch.testing.assert_close(guide, projected[target], rtol=0, atol=0)
        assert x.shape[-2:] == projected[target + 1].shape[-2:]
        if target + 1 == source:
            torch.testing.assert_close(x, projected[source], rtol=0, atol=0)


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
def test_every_upsampler_handles_a_500x375_image(name):
    head = SegformerHeadWithUpsampler(upsample_cfg=dict(type=name),
                                      **dict(HEAD, channels=32)).eval()
    assert len(head.pyramid_upsampler.upsamplers) == 6
    inputs = pyramid_features(IN_CHANNELS, 375, 500, batch=1, dtype=torch.float32)
    with torch.no_grad():
        logits = head(inputs)
    assert logits.shape == (1, 3, *pyramid_sizes(375, 500)[0])
    assert torch.isfinite(logits).all()


def test_pyramid_upsampler_checks_the_level_count():
    with pytest.raises(ValueError, match='expected 4 pyramid levels, got 3'):
        PyramidUpsampler(4, 8)([torch.zeros(1, 8, 4, 4)] * 3)


@pytest.mark.parametrize('upsample_cfg, error, fragment', [
    (dict(type='Sapa'), KeyError, 'upsample_cfg.type'),
    (dict(type='SAPAI', guide_channels=8), ValueError, 'upsample_cfg.guide_channels=8'),
    (dict(type='DySampleS', groups=3), ValueError, 'groups'),
])
def test_bad_upsample_cfg_fails_at_build_naming_the_key(upsample_cfg, error, fragment):
    with pytest.raises(error) as raised:
        SegformerHeadWithUpsampler(upsample_cfg=upsample_cfg, **HEAD)
    assert 'SegformerHeadWithUpsampler' in str(raised.value)
    assert fragment in str(raised.value)
