"""DySample (all styles and scopes) against a per-pixel brute force of the paper's formula.

Exact agreement with the authors' code is checked by tests/upsamplers/test_official_fixtures.py.
"""
import pytest
import torch
import torch.nn.functional as F

from mmdynup import build_upsampler
from mmdynup.converters import build_from_official
from mmdynup.upsamplers.dysample import DySample, DySamplePlus, DySampleS, DySampleSPlus
from tests.ops.test_point_sampling import bilinear_brute_force

VARIANTS = [  # (style, dyscope)
    ('lp', False), ('lp', True), ('pl', False), ('pl', True)]
PRESETS = {DySample: ('lp', False), DySamplePlus: ('lp', True), DySampleS: ('pl', False),
           DySampleSPlus: ('pl', True)}


def perturbed(module, std=0.3):
    """Random parameters and init_pos, so that offsets, scopes and biases all matter."""
    with torch.no_grad():
        for tensor in list(module.parameters()) + [module.init_pos]:
            tensor.add_(std * torch.randn_like(tensor))
    return module


def dysample_brute_force(module, x):
    """Each output pixel from the formula: parent centre + init_pos + scope * offset, read with
    border-clamped bilinear interpolation in its channel group."""
    batch, channels, height, width = x.shape
    s, groups = module.scale_factor, module.groups
    per_group = channels // groups
    features = F.pixel_shuffle(x, s) if module.style == 'pl' else x
    offsets = module.offset(features)
    offsets = offsets * (module.scope(features).sigmoid() * 0.5 if module.dyscope else 0.25)
    initial = module.init_pos.flatten()
    out = x.new_zeros(batch, channels, s * height, s * width)
    for b in range(batch):
        for g in range(groups):
            for row in range(s * height):
                for col in range(s * width):
                    i, a = divmod(row, s)
                    j, c = divmod(col, s)
                    position = []
                    for component, centre in ((0, j + 0.5), (1, i + 0.5)):
                        channel = component * groups * s * s + g * s * s + a * s + c
                        if module.style == 'lp':
                            offset = offsets[b, channel, i, j]
                        else:
                            offset = offsets[b, component * groups + g, row, col]
                        position.append(centre + initial[channel] + offset)
                    out[b, g * per_group:(g + 1) * per_group, row, col] = bilinear_brute_force(
                        x[b, g * per_group:(g + 1) * per_group], *position, 'border')
    return out


@pytest.mark.parametrize('style,dyscope', VARIANTS)
@pytest.mark.parametrize('scale,groups', [(2, 2), (3, 1)])
def test_equals_brute_force(style, dyscope, scale, groups):
    channels = 2 * scale * scale
    module = perturbed(DySample(channels, scale, style=style, groups=groups, dyscope=dyscope,
                                scope_bias=dyscope).double())
    x = torch.randn(2, channels, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(module(x), dysample_brute_force(module, x), atol=1e-12, rtol=0)


@pytest.mark.parametrize('style,dyscope', VARIANTS)
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_zero_offsets_equal_bilinear_interpolation(style, dyscope, scale):
    """With zero offsets and the initial init_pos, DySample is F.interpolate(bilinear,
    align_corners=False) everywhere, borders included: the outer output pixels sample outside
    the outer low-resolution centres, where border padding clamps exactly as interpolate does."""
    channels = 4 * scale * scale
    module = DySample(channels, scale, style=style, groups=4, dyscope=dyscope).double()
    with torch.no_grad():
        # float64 positions: the float32 buffer is 5e-8 off for s = 3 (1/3 is inexact)
        module.init_pos.copy_(DySample.bilinear_positions(scale, 4, torch.float64))
        module.offset.weight.zero_()
        module.offset.bias.zero_()
        if dyscope:
            module.scope.weight.normal_()  # the scope must not matter when the offsets vanish
    x = torch.randn(2, channels, 3, 5, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
    torch.testing.assert_close(module(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_init_pos_is_a_loaded_buffer(scale):
    module = DySample(8 * scale * scale, scale, groups=2)
    assert 'init_pos' in module.state_dict()
    steps = [(b + 0.5) / scale - 0.5 for b in range(scale)]
    grid = module.init_pos.view(2, 2, scale, scale)
    assert grid[0, 1, 0].tolist() == pytest.approx(steps)  # x varies along the column
    assert grid[1, 1, :, 0].tolist() == pytest.approx(steps)  # y varies along the row
    x = torch.randn(1, 8 * scale * scale, 3, 4)
    before = module(x)
    state = module.state_dict()
    state['init_pos'] = state['init_pos'] + 0.2
    module.load_state_dict(state)
    assert not torch.allclose(module(x), before)  # forward uses the loaded buffer


@pytest.mark.parametrize('cls', [DySamplePlus, DySampleS, DySampleSPlus])
def test_presets_fix_style_and_scope(cls):
    module = cls(64)
    assert (module.style, module.dyscope) == PRESETS[cls]
    with pytest.raises(TypeError):
        cls(64, style='lp')


@pytest.mark.parametrize('cls', list(PRESETS))
def test_gradcheck(cls):
    module = perturbed(cls(8, 2, groups=2).double())
    x = torch.randn(1, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


@pytest.mark.parametrize('style,dyscope', VARIANTS)
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_odd_size_keeps_top_left_window_and_backpropagates(style, dyscope, scale):
    channels = 2 * scale * scale
    module = perturbed(DySample(channels, scale, style=style, groups=2, dyscope=dyscope))
    x = torch.randn(2, channels, 5, 3, requires_grad=True)
    full = module(x)
    assert full.shape == (2, channels, 5 * scale, 3 * scale)
    size = (5 * scale - 1, 3 * scale - scale + 1)
    cropped = module(x, size=size)
    torch.testing.assert_close(cropped, full[..., :size[0], :size[1]])
    guided = module(x, torch.zeros(2, 7, *size))  # an unguided upsampler takes only the size
    torch.testing.assert_close(guided, cropped)
    cropped.square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize('style', ['lp', 'pl'])
def test_half_precision_module_keeps_its_dtype(style):
    module = perturbed(DySample(16, style=style, dyscope=True))
    x = torch.randn(2, 16, 3, 5)
    out = module.bfloat16()(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), module.float()(x), atol=0.05, rtol=0.05)


def test_every_class_builds_from_the_common_config():
    expected = {'DySample': 256 * 32 + 32,                       # offset 256 -> 2*4*2^2
                'DySamplePlus': 256 * 32 + 32 + 256 * 32,        # + scope, no bias
                'DySampleS': 64 * 8 + 8,                         # offset 256/2^2 -> 2*4
                'DySampleSPlus': 64 * 8 + 8 + 64 * 8}
    for name, count in expected.items():
        module = build_upsampler(dict(type=name, in_channels=256, scale_factor=2,
                                      guide_channels=256))
        assert not module.requires_guide
        assert sum(p.numel() for p in module.parameters()) == count
        assert module(torch.randn(2, 256, 3, 5)).shape == (2, 256, 6, 10)


def test_scope_bias_adds_the_forks_bias():
    module = DySample(16, dyscope=True, scope_bias=True)
    assert module.scope.bias is not None and module.scope.bias.abs().sum() == 0
    assert DySample(16, dyscope=True).scope.bias is None


@pytest.mark.parametrize('kwargs,names', [
    (dict(in_channels=6, groups=4), ['in_channels=6', 'groups=4']),
    (dict(in_channels=18, scale_factor=2, style='pl', groups=2),
     ['in_channels=18', 'scale_factor ** 2=4']),
    (dict(in_channels=8, scale_factor=4, style='pl', groups=4), ['scale_factor ** 2=16']),
    (dict(in_channels=16, style='lpx'), ['style', "'lpx'", "'pl'"]),
    (dict(in_channels=16, groups=0), ['groups']),
    (dict(in_channels=16, scale_factor=1), ['scale_factor']),
])
def test_bad_construction_names_the_argument(kwargs, names):
    with pytest.raises(ValueError) as error:
        DySample(**kwargs)
    for name in names:
        assert name in str(error.value)


def test_wrong_channels_name_in_channels():
    with pytest.raises(ValueError, match='in_channels=16'):
        DySample(16)(torch.randn(1, 8, 3, 3))


def test_converter_accepts_the_forks_arguments():
    """The forks call the scale ``scale_factor`` and give the scope conv a bias."""
    reference = DySample(16, 2, groups=2, dyscope=True, scope_bias=True)
    state = {name: tensor.double() for name, tensor in reference.state_dict().items()}
    module = build_from_official('dysample.DySample', dict(in_channels=16, scale_factor=2,
                                                           groups=2, dyscope=True), state)
    assert module.scope.bias.dtype == torch.float64
    with pytest.raises(TypeError, match='scale_factor'):
        build_from_official('dysample.DySample', dict(in_channels=16, scale=2, scale_factor=2),
                            state)
    with pytest.raises(TypeError, match='kernel'):
        build_from_official('dysample.DySample', dict(in_channels=16, kernel=3), state)
