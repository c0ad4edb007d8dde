"""PAFPN-family necks with upsamplers: equal to mmdet's PAFPN / YOLOXPAFPN / CSPNeXtPAFPN with
interpolation (same weights, torch.equal, odd sizes), guided operators see the finer level,
every upsampler runs at odd sizes, and bad configs fail at build naming the key."""
import pytest
import torch
from mmdet.models.necks import PAFPN, CSPNeXtPAFPN, YOLOXPAFPN
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

import mmdynup
from mmdynup.det import (CSPNeXtPAFPNWithUpsampler, PAFPNWithUpsampler, YOLOXPAFPNWithUpsampler,
                         added_parameters)

IN_CHANNELS = [8, 16, 24]
NECKS = {
    'pafpn': (PAFPN, PAFPNWithUpsampler, dict(out_channels=16, num_outs=5)),
    'pafpn_on_output': (PAFPN, PAFPNWithUpsampler,
                        dict(out_channels=16, num_outs=5, add_extra_convs='on_output',
                             relu_before_extra_convs=True)),
    'pafpn_on_lateral_start1': (PAFPN, PAFPNWithUpsampler,
                                dict(out_channels=16, num_outs=3, start_level=1,
                                     add_extra_convs='on_lateral')),
    'yolox': (YOLOXPAFPN, YOLOXPAFPNWithUpsampler, dict(out_channels=8, num_csp_blocks=1)),
    'yolox_depthwise': (YOLOXPAFPN, YOLOXPAFPNWithUpsampler,
                        dict(out_channels=8, num_csp_blocks=1, use_depthwise=True)),
    'cspnext': (CSPNeXtPAFPN, CSPNeXtPAFPNWithUpsampler,
                dict(out_channels=8, num_csp_blocks=1, expand_ratio=0.5)),
}
# Odd sizes mmdet's necks run: PAFPN resizes to the finer level; YOLOX / RTMDet need exact 2x.
SIZES = {'pafpn': [(25, 19), (13, 10), (7, 5)], 'exact2x': [(28, 20), (14, 10), (7, 5)]}


def _features(sizes, batch=2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.randn(batch, c, h, w, generator=generator, dtype=dtype)
                 for c, (h, w) in zip(IN_CHANNELS, sizes))


def _sizes(variant):
    return SIZES['pafpn'] if variant.startswith('pafpn') else SIZES['exact2x']


def _pair(variant, upsample_cfg):
    """mmdet's neck (randomised weights, BN statistics included) and ours with its state_dict."""
    upstream_class, our_class, kwargs = NECKS[variant]
    torch.manual_seed(0)
    reference = upstream_class(IN_CHANNELS, **kwargs).double()
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith('running_var'):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.2)
    ours = our_class(IN_CHANNELS, upsample_cfg=upsample_cfg, **kwargs).double()
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(key.startswith('upsamplers.') for key in missing)
    return reference.eval(), ours.eval()


# mmdet's PAFPN has no upsample_cfg (nearest to the finer size); YOLOX / RTMDet default to the
# F.interpolate form.
INTERPOLATIONS = [(variant, cfg) for variant in NECKS
                  for cfg in (None, dict(type='NearestUpsample'), dict(mode='nearest'))
                  + ((dict(scale_factor=2, mode='nearest'),) if 'pafpn' not in variant else ())]


@pytest.mark.parametrize('variant, upsample_cfg', INTERPOLATIONS)
def test_interpolation_equals_mmdet(variant, upsample_cfg):
    reference, ours = _pair(variant, upsample_cfg)
    assert set(ours.state_dict()) == set(reference.state_dict())
    inputs = _features(_sizes(variant))
    with torch.no_grad():
        expected, got = reference(inputs), ours(inputs)
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize('variant', ['pafpn', 'yolox', 'cspnext'])
def test_guided_upsamplers_are_guided_by_the_finer_level(variant, monkeypatch):
    """FADE at the width of the tensor it upsamples, guided by the finer level: the lateral
    before the addition (PAFPN) or the finer backbone feature (YOLOX / RTMDet)."""
    _, ours = _pair(variant, dict(type='FADE'))
    inputs = _features(_sizes(variant), dtype=torch.float64)
    calls = []
    for step, upsampler in enumerate(ours.upsamplers):
        original = upsampler.forward

        def recording(x, guide=None, size=None, original=original, step=step):
            calls.append((step, x.shape, guide))
            return original(x, guide, size)
        monkeypatch.setattr(upsampler, 'forward', recording)
    with torch.no_grad():
        ours(inputs)
    assert len(calls) == len(IN_CHANNELS) - 1
    for step, x_shape, guide in calls:
        if variant == 'pafpn':  # upsamplers[i - 1] merges level i into i - 1, at out_channels
            finer = ours.lateral_convs[step](inputs[step])
            assert x_shape[1] == 16
        else:  # upsamplers[j]: coarsest step first, at the finer level's width
            finer = inputs[len(IN_CHANNELS) - 2 - step]
            assert x_shape[1] == IN_CHANNELS[len(IN_CHANNELS) - 2 - step]
        assert torch.equal(guide, finer)


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
@pytest.mark.parametrize('variant', ['pafpn', 'yolox', 'cspnext'])
def test_every_upsampler_runs_at_odd_sizes_with_gradients(variant, name):
    """Learned upsamplers reach any pyramid (25 x 19 over 13 x 10), as mmdet's stride-2 convs."""
    _, our_class, kwargs = NECKS[variant]
    torch.manual_seed(0)
    wide = [32, 64, 64]  # A2U's and SAPABase's GroupNorm(32) need multiples of 32
    kwargs = dict(kwargs, out_channels=32)
    neck = our_class(wide, upsample_cfg=dict(type=name), **kwargs)
    generator = torch.Generator().manual_seed(1)
    inputs = tuple(torch.randn(1, c, h, w, generator=generator)
                   for c, (h, w) in zip(wide, SIZES['pafpn']))
    outs = neck(inputs)
    assert [tuple(out.shape[-2:]) for out in outs[:3]] == SIZES['pafpn']
    sum(out.sum() for out in outs).backward()
    for parameter in neck.upsamplers.parameters():
        assert parameter.grad is not None


def test_added_parameters_are_the_upsamplers_at_each_width():
    """YOLOX upsamplers sit at the finer level's width: DySample (lp, g4) at C channels is a
    1x1 conv C -> 2 * 4 * 4 = 32 (32 C + 32 parameters)."""
    neck = YOLOXPAFPNWithUpsampler(IN_CHANNELS, 8, num_csp_blocks=1,
                                   upsample_cfg=dict(type='DySample', groups=4))
    assert [upsampler.in_channels for upsampler in neck.upsamplers] == [16, 8]
    assert added_parameters(neck) == (32 * 16 + 32) + (32 * 8 + 32)
    reference = YOLOXPAFPN(IN_CHANNELS, 8, num_csp_blocks=1)
    total = sum(parameter.numel() for parameter in neck.parameters())
    assert total - sum(parameter.numel() for parameter in reference.parameters()) == 832


@pytest.mark.parametrize('neck_type', ['PAFPNWithUpsampler', 'YOLOXPAFPNWithUpsampler',
                                       'CSPNeXtPAFPNWithUpsampler'])
def test_builds_from_the_mmdet_registry_under_each_default_scope(neck_type):
    cfg = dict(type=neck_type, in_channels=IN_CHANNELS, out_channels=8,
               upsample_cfg=dict(type='mmdynup.FADE'))
    if neck_type == 'PAFPNWithUpsampler':
        cfg['num_outs'] = 3
    with DefaultScope.overwrite_default_scope('mmdet'):
        neck = MMDET_MODELS.build(cfg)
    assert type(neck).__name__ == neck_type and type(neck.upsamplers[0]).__name__ == 'FADE'
    with DefaultScope.overwrite_default_scope('mmseg'):
        neck = MMDET_MODELS.build(dict(cfg, type=f'mmdet.{neck_type}',
                                       upsample_cfg=dict(type='DySample')))
    assert type(neck.upsamplers[0]).__name__ == 'DySample'


@pytest.mark.parametrize('upsampler_init', ['neck', 'own'])
def test_upsampler_init(upsampler_init):
    torch.manual_seed(0)
    neck = CSPNeXtPAFPNWithUpsampler(IN_CHANNELS, 8, num_csp_blocks=1,
                                     upsampler_init=upsampler_init,
                                     upsample_cfg=dict(type='DySample'))
    before = {k: v.clone() for k, v in neck.upsamplers.state_dict().items()}
    neck.init_weights()
    after = neck.upsamplers.state_dict()
    unchanged = all(torch.equal(before[k], after[k]) for k in before)
    assert unchanged == (upsampler_init == 'own')


@pytest.mark.parametrize('neck_type', ['PAFPNWithUpsampler', 'YOLOXPAFPNWithUpsampler'])
@pytest.mark.parametrize('kwargs, error, words', [
    (dict(upsample_cfg=dict(type='DySampel')), KeyError, ['upsample_cfg.type', 'DySample']),
    (dict(upsample_cfg=dict(type='DySample', mode='nearest')), ValueError,
     ['upsample_cfg', 'mode', '_delete_=True']),
    (dict(upsample_cfg=dict(type='DySample', groups=5)), ValueError, ['upsample_cfg', 'groups']),
    (dict(upsample_cfg=dict(size=4, scale=2)), KeyError, ['upsample_cfg', 'scale']),
    (dict(upsampler_init='xavier'), ValueError, ['upsampler_init', "'own'"]),
])
def test_bad_config_fails_at_build_naming_the_key(neck_type, kwargs, error, words):
    arguments = dict(in_channels=IN_CHANNELS, out_channels=8, **kwargs)
    if neck_type == 'PAFPNWithUpsampler':
        arguments['num_outs'] = 3
    with pytest.raises(error) as info:
        with DefaultScope.overwrite_default_scope('mmdet'):
            MMDET_MODELS.build(dict(type=neck_type, **arguments))
    message = str(info.value)
    assert neck_type in message
    for word in words:
        assert word in message, f'{word!r} not in: {message}'


@pytest.mark.parametrize('variant', ['pafpn', 'yolox'])
def test_wrong_number_of_levels_is_refused(variant):
    _, ours = _pair(variant, None)
    with pytest.raises(ValueError, match='2 input levels.*3 levels'):
        ours(_features(_sizes(variant))[:2])
