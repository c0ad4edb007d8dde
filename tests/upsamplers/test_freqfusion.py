"""FreqFusion: the converter's argument contract, the authors' initialisation, the reference
paths beside the fast ones, odd sizes and the merge seams.

Exact agreement with the authors' code (outputs, input and parameter gradients of every
``freqfusion_*`` record) is checked by tests/upsamplers/test_official_fixtures.py.
"""
import pytest
import torch

from mmdynup import build_upsampler
from mmdynup.converters import convert_official
from mmdynup.converters.freqfusion import freqfusion_arguments
from mmdynup.ops.dispatch import use_implementation
from mmdynup.ops.neighbour_similarity import (neighbour_similarity,
                                              neighbour_similarity_reference)
from mmdynup.upsamplers.freqfusion import FreqFusion, hamming_window_2d

SWITCHES = [  # constructor arguments beyond the channels
    dict(),
    dict(feature_resample=True, hamming_window=False, compressed_channels=16),
    dict(feature_resample=True, direction_feat='sim', feature_resample_norm=False,
         compressed_channels=12, feature_resample_group=2),
    dict(comp_feat_upsample=False, lowpass_kernel=3, highpass_kernel=5, hr_residual=False),
    dict(comp_feat_upsample=False, use_high_pass=False),
    dict(semi_conv=False, upsample_mode='bilinear', align_corners=True, feature_resample=True,
         compressed_channels=16),
    dict(encoder_kernel=1, compressed_channels=8),
    dict(encoder_dilation=2, compressed_channels=8),
]


def perturbed(module, std=0.05):
    """Noise on every parameter, so that zero-initialised convs and biases matter too."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(std * torch.randn_like(parameter))
    return module


def make(switches, in_channels=16, guide_channels=8):
    kwargs = dict(dict(compressed_channels=16), **switches)
    return perturbed(FreqFusion(in_channels, guide_channels=guide_channels, **kwargs).double())


@pytest.mark.parametrize('switches', SWITCHES, ids=str)
@pytest.mark.parametrize('size', [(10, 14), (9, 13)], ids=['2x', 'odd'])
def test_fast_paths_equal_reference(switches, size):
    """Tiled reassembly and lean similarity vs the plain references, outputs and gradients."""
    module = make(switches)
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(2, 8, *size, dtype=torch.float64, requires_grad=True)
    results = []
    for impl in ('reference', 'tiled'):
        module.zero_grad()
        x.grad = guide.grad = None
        with use_implementation(impl):
            outputs = module.fuse(x, guide)
        upstream = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o) for o in outputs]
        torch.autograd.backward(outputs, upstream)
        results.append([*outputs, x.grad, guide.grad]
                       + [p.grad.clone() for p in module.parameters()])
    for fast, reference in zip(*results):
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize('kernel_size,dilation', [(3, 2), (3, 1), (5, 1)])
def test_neighbour_similarity_equals_reference(kernel_size, dilation):
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64, requires_grad=True)
    x.data[0, :, 2, 3] = 0  # a zero vector: its norm takes eps, as in F.cosine_similarity
    lean = neighbour_similarity(x, kernel_size, dilation)
    grad_lean, = torch.autograd.grad(lean, x, torch.ones_like(lean))
    reference = neighbour_similarity_reference(x, kernel_size, dilation)
    grad_reference, = torch.autograd.grad(reference, x, torch.ones_like(reference))
    torch.testing.assert_close(lean, reference, atol=1e-12, rtol=0)
    # rtol: the zero vector's gradient is scaled by 1 / eps (about 1e8)
    torch.testing.assert_close(grad_lean, grad_reference, atol=1e-12, rtol=1e-12)
    small = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: neighbour_similarity(t, kernel_size, dilation),
                                    (small,))


def test_odd_guide_is_the_top_left_window_of_the_2x_fusion():
    """A guide smaller than 2x equals the 2x fusion restricted to the window, away from the
    right / bottom border (the cropped map has its own border there). The resampler's GroupNorm
    is off (its statistics are over the whole map) and its offsets small (a far sample would be
    clamped at the other border)."""
    module = make(dict(feature_resample=True, feature_resample_norm=False))
    with torch.no_grad():
        for conv in (module.dysampler.offset, module.dysampler.hr_offset):
            conv.weight.mul_(0.01)
            conv.bias.mul_(0.01)
    x = torch.randn(1, 16, 6, 6, dtype=torch.float64)
    guide = torch.randn(1, 8, 12, 12, dtype=torch.float64)
    full = module.fuse(x, guide)
    cropped = module.fuse(x, guide[..., :11, :11])
    for whole, part in zip(full, cropped):
        assert part.shape[-2:] == (11, 11)
        torch.testing.assert_close(part[..., :4, :4], whole[..., :4, :4], atol=1e-12, rtol=0)


def test_init_weights_scheme():
    """The authors' ``init_weights``: Xavier-uniform convs (the offset generator's too, whose
    own N(0, 0.001) / zero init it overrides), zero biases, content encoders N(0, 0.001)."""
    torch.manual_seed(0)
    module = FreqFusion(256, guide_channels=256, compressed_channels=64, feature_resample=True)
    for name, conv in module.named_modules():
        if not isinstance(conv, torch.nn.Conv2d):
            continue
        assert torch.count_nonzero(conv.bias) == 0, name
        weight = conv.weight
        if name.startswith('content_encoder'):
            assert abs(weight.std().item() - 0.001) < 1e-4, name
            continue
        fan_out = weight.shape[0] * weight[0, 0].numel()
        fan_in = weight[0].numel()
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert weight.abs().max() <= bound, name
        # uniform on [-bound, bound]: std bound / sqrt(3)
        assert abs(weight.std().item() / (bound / 3 ** 0.5) - 1) < 0.1, name
    assert module.dysampler.direct_scale.weight.abs().sum() > 0  # the sampler's zeros are gone
    for norm in (module.dysampler.norm_hr, module.dysampler.norm_lr):
        assert torch.equal(norm.weight, torch.ones(64)) and torch.count_nonzero(norm.bias) == 0


def test_hamming_windows_are_float32_rounded_buffers():
    window = hamming_window_2d(5)
    assert window.shape == (1, 1, 5, 5)
    assert window[0, 0, 0, 0].item() == torch.tensor(0.08 * 0.08, dtype=torch.float32).item()
    module = FreqFusion(8, compressed_channels=8, hamming_window=False)
    assert set(module.state_dict()) >= {'hamming_lowpass', 'hamming_highpass'}
    assert module.hamming_lowpass.shape == (1,)


def test_loaded_windows_are_used_not_recomputed():
    module = FreqFusion(8, compressed_channels=8)
    x, guide = torch.randn(1, 8, 4, 5), torch.randn(1, 8, 8, 10)
    before = module.fuse(x, guide)[0]
    state = module.state_dict()
    state['hamming_lowpass'] = torch.rand(1, 1, 5, 5) + 0.5
    module.load_state_dict(state)
    assert not torch.allclose(module.fuse(x, guide)[0], before)


def test_forward_merge_and_concatenation():
    module = make(dict(feature_resample=True), in_channels=8, guide_channels=8).float()
    x, guide = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 10, 13)
    _, guide_out, x_up = module.fuse(x, guide)
    torch.testing.assert_close(module(x, guide), x_up)
    torch.testing.assert_close(module.merge(x, guide), guide_out + x_up)
    torch.testing.assert_close(module.merge_concatenated(x, guide),
                               torch.cat([guide_out, x_up], dim=1))
    assert FreqFusion.concatenates_pyramid


def test_compress_ratio_is_the_authors_rule():
    assert FreqFusion(256, guide_channels=256, compress_ratio=8).compressed_channels == 64
    assert FreqFusion(512, guide_channels=256, compress_ratio=4).compressed_channels == 192


def test_build_from_registry():
    module = build_upsampler(dict(type='FreqFusion', in_channels=8, compressed_channels=8))
    assert isinstance(module, FreqFusion)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(use_high_pass=False), ValueError, 'use_high_pass=False'),
    (dict(scale_factor=3), ValueError, 'scale_factor must be 2'),
    (dict(lowpass_kernel=4), ValueError, 'lowpass_kernel must be an odd'),
    (dict(upsample_mode='linear'), ValueError, 'upsample_mode'),
    (dict(direction_feat='dot'), ValueError, 'direction_feat'),
    (dict(feature_resample=True, compressed_channels=4), ValueError, 'GroupNorm'),
    (dict(feature_resample=True, feature_resample_group=3), ValueError,
     'feature_resample_group'),
    (dict(semi_conv='yes'), TypeError, 'semi_conv must be True or False'),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FreqFusion(8, **dict(dict(compressed_channels=8), **kwargs))


def test_guide_larger_than_twice_is_refused():
    module = FreqFusion(8, compressed_channels=8)
    with pytest.raises(ValueError, match='at most'):
        module.fuse(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 9, 8))


def test_semi_conv_off_takes_any_ratio():
    module = FreqFusion(8, compressed_channels=8, semi_conv=False)
    assert module.fuse(torch.randn(1, 8, 3, 4), torch.randn(1, 8, 10, 11))[2].shape == \
        (1, 8, 10, 11)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(up_group=2), ValueError, 'up_group=2'),
    (dict(scale_factor=2), ValueError, 'scale_factor=2'),
    (dict(typo_switch=True), TypeError, 'typo_switch'),
    (dict(hr_channels=8), TypeError, 'lr_channels'),
])
def test_converter_refuses_unusable_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        freqfusion_arguments(dict(dict(hr_channels=8, lr_channels=8), **kwargs)
                             if 'hr_channels' not in kwargs else kwargs)


def test_converter_maps_every_official_argument():
    official = dict(hr_channels=16, lr_channels=24, scale_factor=1, lowpass_kernel=3,
                    highpass_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1,
                    compressed_channels=16, align_corners=False, upsample_mode='nearest',
                    feature_resample=True, feature_resample_group=4, comp_feat_upsample=True,
                    use_high_pass=True, use_low_pass=False, hr_residual=True, semi_conv=True,
                    hamming_window=True, feature_resample_norm=False)
    module = FreqFusion(**freqfusion_arguments(official))
    conversion = convert_official('FreqFusion.FreqFusion', official, module.state_dict())
    assert conversion.module.in_channels == 24 and conversion.module.guide_channels == 16
    assert set(conversion.official_names.values()) == set(module.state_dict())
    outputs = conversion.official_forward(hr_feat=torch.randn(1, 16, 8, 6),
                                          lr_feat=torch.randn(1, 24, 4, 3))
    assert [tuple(o.shape) for o in outputs] == [(1, 9, 8, 6), (1, 16, 8, 6), (1, 24, 8, 6)]


def test_segformer_cascade_is_the_concatenating_form():
    """Three FreqFusions (256-, 512-, 768-channel inputs at width 256), chained as the authors'
    README: up(c4 | c3) -> up([c3', c4_up] | c2) -> up([c2', ...] | c1), split back into levels."""
    pytest.importorskip('mmseg')
    from mmdynup.seg import PyramidUpsampler
    pyramid = PyramidUpsampler(4, 8, dict(type='FreqFusion', compressed_channels=8)).double()
    assert [m.in_channels for m in pyramid.upsamplers] == [8, 16, 24]
    levels = [torch.randn(1, 8, -(-24 // 2 ** i), -(-20 // 2 ** i), dtype=torch.float64)
              for i in range(4)]
    out = pyramid(levels)
    stack = levels[3]
    for up, target in zip(pyramid.upsamplers, (2, 1, 0)):
        _, finer, coarser = up.fuse(stack, levels[target])
        stack = torch.cat([finer, coarser], dim=1)
    assert len(out) == 4
    torch.testing.assert_close(torch.cat(out, dim=1), stack)
