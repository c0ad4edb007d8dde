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
    # Six per-level steps, or one per target level for a concatenating operator (FreqFusion).
    concatenating = mmdynup.registry.upsampler_classes()[name].concatenates_pyramid
    assert len(head.pyramid_upsampler.upsamplers) == (3 if concatenating else 6)
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


def _authors_formula(head, inputs):
    """The authors' head (poppinace/fade segformer/segformer_head.py) written out: Linear
    projections with bias, the cascade (or a bilinear resize), [_c4, _c3, _c2, _c1] into
    linear_fuse, linear_pred."""
    projected = [torch.einsum('bchw,ec->behw', x, conv.weight[:, :, 0, 0])
                 + conv.bias[None, :, None, None] for conv, x in zip(head.convs, inputs)]
    c1, c2, c3, c4 = projected
    up = head.pyramid_upsampler.upsamplers
    if up is None:
        c2, c3, c4 = (torch.nn.functional.interpolate(c, size=c1.shape[-2:], mode='bilinear',
                                                      align_corners=False) for c in (c2, c3, c4))
    else:
        c4 = up[2](up[1](up[0](c4, c3), c2), c1)
        c3 = up[4](up[3](c3, c2), c1)
        c2 = up[5](c2, c1)
    fused = head.fusion_conv(torch.cat([c4, c3, c2, c1], dim=1))
    return head.conv_seg(fused)


@pytest.mark.parametrize('upsample_cfg', [None, dict(type='FADE'), dict(type='FADELite')],
                         ids=['bilinear', 'fade', 'fade-lite'])
def test_authors_form_is_the_authors_head(upsample_cfg):
    head = SegformerHeadWithUpsampler(upsample_cfg=upsample_cfg, head_form='authors',
                                      **HEAD).double().eval()
    # An odd coarsest level in an exact x2 pyramid, batch 2 (the authors' size contract).
    generator = torch.Generator().manual_seed(3)
    inputs = [torch.randn(2, c, 3 * 2 ** (3 - i), 5 * 2 ** (3 - i), generator=generator,
                          dtype=torch.float64) for i, c in enumerate(IN_CHANNELS)]
    torch.testing.assert_close(head(inputs), _authors_formula(head, inputs), rtol=1e-12,
                               atol=1e-12)


def test_authors_form_projects_without_norm_or_activation():
    mmseg_form = SegformerHeadWithUpsampler(**HEAD)
    authors = SegformerHeadWithUpsampler(head_form='authors', **HEAD)
    assert {key for key in authors.state_dict() if key.startswith('convs.')} == \
        {f'convs.{k}.{name}' for k in range(4) for name in ('weight', 'bias')}
    # Per stage: mmseg's conv (no bias) + BN affine vs the authors' conv with bias.
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(mmseg_form) - count(authors) == 4 * HEAD['channels']
    assert list(authors.fusion_conv.state_dict()) == list(mmseg_form.fusion_conv.state_dict())


def test_unknown_head_form_is_refused():
    with pytest.raises(ValueError,
                       match=r"head_form='nvlabs' is not one of \('mmseg', 'authors'\)"):
        SegformerHeadWithUpsampler(head_form='nvlabs', **HEAD)
