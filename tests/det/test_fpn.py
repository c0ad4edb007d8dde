"""FPNWithUpsampler: equals mmdet's FPN with interpolation, wires guided upsamplers like the
authors' fork, works with every upsampler at sizes that are not multiples of 32, refuses bad
configs at build time, and adds exactly the upsamplers' parameters."""
import pytest
import torch
from mmdet.models.necks import FPN
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

import mmdynup
from mmdynup.det import FPNWithUpsampler, added_parameters
from tests.seg.helpers import RecordingGuidedUpsample, pyramid_features, pyramid_sizes

IN_CHANNELS = [8, 16, 24, 32]
# Variants of mmdet's FPN: extra levels by max pool or by each extra-conv source, fewer levels.
FPN_VARIANTS = {
    'maxpool': dict(num_outs=5),
    'on_input': dict(num_outs=5, add_extra_convs='on_input'),
    'on_lateral_start1': dict(num_outs=5, start_level=1, add_extra_convs='on_lateral'),
    'on_output_relu': dict(num_outs=6, add_extra_convs='on_output', relu_before_extra_convs=True),
    'end_level2': dict(num_outs=3, end_level=2),
    'bn_relu': dict(num_outs=5, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU')),
}


def _pair(upsample_cfg, **kwargs):
    """mmdet's FPN (randomised weights) and ours with the same state_dict, float64, eval."""
    torch.manual_seed(0)
    reference = FPN(IN_CHANNELS, 16, **kwargs).double()
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith('running_var'):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.2)
    ours = FPNWithUpsampler(IN_CHANNELS, 16, upsample_cfg=upsample_cfg, **kwargs).double()
    ours.load_state_dict(reference.state_dict())
    return reference.eval(), ours.eval()


@pytest.mark.parametrize('upsample_cfg', [None, dict(type='NearestUpsample')],
                         ids=['none', 'NearestUpsample'])
@pytest.mark.parametrize('variant', FPN_VARIANTS, ids=list(FPN_VARIANTS))
@pytest.mark.parametrize('size', [(64, 96), (375, 500)], ids=['64x96', '375x500'])
def test_interpolation_equals_mmdet_fpn(upsample_cfg, variant, size):
    reference, ours = _pair(upsample_cfg, **FPN_VARIANTS[variant])
    assert ours.state_dict().keys() == reference.state_dict().keys()
    features = pyramid_features(IN_CHANNELS, *size)
    ours_inputs = [f.clone().requires_grad_(True) for f in features]
    reference_inputs = [f.clone().requires_grad_(True) for f in features]
    ours_out = ours(tuple(ours_inputs))
    reference_out = reference(tuple(reference_inputs))
    assert len(ours_out) == len(reference_out) == FPN_VARIANTS[variant]['num_outs']
    for level, (a, b) in enumerate(zip(ours_out, reference_out)):
        assert torch.equal(a, b), f'level {level} differs'
    upstream = [torch.randn_like(out) for out in ours_out]
    torch.autograd.backward(ours_out, upstream)
    torch.autograd.backward(reference_out, upstream)
    for a, b in zip(ours_inputs, reference_inputs):
        # Levels below start_level are not used by either neck.
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)


def test_guided_upsamplers_get_the_finer_lateral_before_the_addition():
    torch.manual_seed(0)
    neck = FPNWithUpsampler(IN_CHANNELS, 16, 5, upsample_cfg=dict(type=RecordingGuidedUpsample))
    features = pyramid_features(IN_CHANNELS, 72, 100, dtype=torch.float32)
    neck(tuple(features))
    raw_laterals = [conv(f) for conv, f in zip(neck.lateral_convs, features)]
    # upsamplers[i - 1] runs once, merging level i (already merged with i + 1) into level i - 1.
    merged_top = raw_laterals[3]
    for step in (2, 1, 0):
        (x, guide), = neck.upsamplers[step].calls
        assert torch.equal(guide, raw_laterals[step]), f'step {step}: guide is not the raw lateral'
        assert torch.equal(x, merged_top), f'step {step}: x is not the merged coarser level'
        merged_top = raw_laterals[step] + RecordingGuidedUpsample(16)(x, guide)


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
def test_every_upsampler_runs_on_a_500x375_image(name):
    """Whole-image inference without padding: stride-32 level 12x16 under 24x32, 47x63 under
    24x32 (not 2x), down to the stride-4 level 94x125."""
    torch.manual_seed(0)
    channels = 32  # SAPABase's GroupNorm(32) needs multiples of 32
    neck = FPNWithUpsampler(IN_CHANNELS, channels, 5, upsample_cfg=dict(type=name)).eval()
    features = pyramid_features(IN_CHANNELS, 375, 500, batch=1, dtype=torch.float32)
    outs = neck(tuple(features))
    sizes = pyramid_sizes(375, 500)
    assert [tuple(out.shape[-2:]) for out in outs] == sizes + [(6, 8)]
    assert all(out.shape[:2] == (1, channels) and torch.isfinite(out).all() for out in outs)


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
def test_only_the_used_upsamplers_are_built_and_all_get_gradients(name):
    torch.manual_seed(0)
    neck = FPNWithUpsampler(IN_CHANNELS, 32, 5, start_level=1, add_extra_convs='on_input',
                            upsample_cfg=dict(type=name))
    assert len(neck.upsamplers) == 2  # three levels from start_level=1: two top-down steps
    outs = neck(tuple(pyramid_features(IN_CHANNELS, 40, 56, dtype=torch.float32)))
    sum(out.square().sum() for out in outs).backward()
    missing = [n for n, p in neck.upsamplers.named_parameters() if p.grad is None]
    assert not missing, f'upsampler parameters without gradient: {missing}'


def test_added_parameters_of_dysample_at_256_channels():
    """One DySample (lp, 4 groups): offset conv 256 -> 2 * 4 * 2^2 = 32 channels, 256 * 32 + 32
    = 8,224 parameters. mmdet's four-level FPN runs three top-down steps: +24,672."""
    in_channels = [256, 512, 1024, 2048]
    baseline = FPN(in_channels, 256, 5)
    counts = {}
    for name, cfg in [('dysample', dict(type='DySample', style='lp', groups=4)),
                      ('dysample-plus', dict(type='DySamplePlus', groups=4, scope_bias=True))]:
        neck = FPNWithUpsampler(in_channels, 256, 5, upsample_cfg=cfg)
        counts[name] = sum(p.numel() for p in neck.parameters()) - \
            sum(p.numel() for p in baseline.parameters())
        assert counts[name] == added_parameters(neck)
    assert sum(p.numel() for p in mmdynup.build_upsampler(
        dict(type='DySample', in_channels=256)).parameters()) == 8224
    assert counts == {'dysample': 3 * 8224, 'dysample-plus': 3 * (8224 + 256 * 32 + 32)}
    assert counts['dysample'] == 24672


def test_builds_from_the_mmdet_registry_under_each_default_scope():
    cfg = dict(type='FPNWithUpsampler', in_channels=IN_CHANNELS, out_channels=32, num_outs=5,
               upsample_cfg=dict(type='mmdynup.FADE'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        neck = MMDET_MODELS.build(cfg)
    assert isinstance(neck, FPNWithUpsampler) and type(neck.upsamplers[0]).__name__ == 'FADE'
    # From another host's scope the neck needs mmdet's scope prefix; the upsampler needs none.
    with DefaultScope.overwrite_default_scope('mmseg'):
        neck = MMDET_MODELS.build(dict(cfg, type='mmdet.FPNWithUpsampler',
                                       upsample_cfg=dict(type='DySample')))
    assert type(neck.upsamplers[0]).__name__ == 'DySample'


@pytest.mark.parametrize('upsampler_init', ['neck', 'own'])
def test_upsampler_init(upsampler_init):
    """'neck': Xavier over every Conv2d, upsamplers included (the authors' fork); 'own': the
    upsamplers keep their paper initialisation (DySample: N(0, 0.001) offsets, zero scope)."""
    torch.manual_seed(0)
    neck = FPNWithUpsampler(IN_CHANNELS, 64, 5, upsampler_init=upsampler_init,
                            upsample_cfg=dict(type='DySamplePlus'))
    before = {k: v.clone() for k, v in neck.upsamplers.state_dict().items()}
    lateral_before = neck.lateral_convs[0].conv.weight.clone()
    neck.init_weights()
    assert not torch.equal(neck.lateral_convs[0].conv.weight, lateral_before)
    after = neck.upsamplers.state_dict()
    if upsampler_init == 'own':
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert after['0.offset.weight'].std() < 0.002 and not after['0.scope.weight'].any()
    else:
        bound = (6 / (64 + 32)) ** 0.5  # Xavier-uniform bound of a 64 -> 32 1x1 conv
        assert after['0.offset.weight'].abs().max() > 0.5 * bound
        assert after['0.scope.weight'].abs().max() > 0.5 * bound
        assert torch.equal(before['0.init_pos'], after['0.init_pos'])


@pytest.mark.parametrize('kwargs, error, words', [
    (dict(upsample_cfg=dict(type='DySampel')), KeyError, ['upsample_cfg.type', 'DySample']),
    (dict(upsample_cfg=dict(type='DySample', groups=5)), ValueError, ['upsample_cfg', 'groups']),
    (dict(upsample_cfg=dict(type='DySample', mode='nearest')), ValueError,
     ['upsample_cfg', 'mode', '_delete_=True']),
    (dict(upsample_cfg=dict(groups=4)), KeyError, ['upsample_cfg', '"type"']),
    (dict(upsample_cfg=dict(type='FADE', guided=False)), ValueError,
     ['upsample_cfg.guided', 'FADE']),
    (dict(upsample_cfg=dict(type='DySample', in_channels=64)), ValueError,
     ['upsample_cfg.in_channels', '32']),
    (dict(upsample_cfg='DySample'), TypeError, ['upsample_cfg', 'dict']),
    (dict(upsampler_init='xavier'), ValueError, ['upsampler_init', "'own'"]),
    (dict(add_extra_convs='on_inputs'), ValueError, ['add_extra_convs', 'on_input']),
    (dict(num_outs=3), ValueError, ['num_outs=3']),
    (dict(end_level=5), ValueError, ['end_level']),
])
def test_bad_config_fails_at_build_naming_the_key(kwargs, error, words):
    arguments = dict(in_channels=IN_CHANNELS, out_channels=32, num_outs=5)
    arguments.update(kwargs)
    with pytest.raises(error) as info:
        with DefaultScope.overwrite_default_scope('mmdet'):
            MMDET_MODELS.build(dict(type='FPNWithUpsampler', **arguments))
    message = str(info.value)
    assert 'FPNWithUpsampler' in message
    for word in words:
        assert word in message, f'{word!r} not in: {message}'


def test_wrong_number_of_levels_is_refused():
    neck = FPNWithUpsampler(IN_CHANNELS, 32, 5)
    with pytest.raises(ValueError, match='3 input levels.*4 levels'):
        neck(tuple(pyramid_features(IN_CHANNELS[:3], 32, 32, dtype=torch.float32)))
