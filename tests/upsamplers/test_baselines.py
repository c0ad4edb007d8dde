"""Baselines: interpolation equals the hosts' resize; learned ones have the documented layout."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from mmdynup import build_upsampler
from mmdynup.upsamplers.baselines import (BilinearUpsample, DeconvUpsample, NearestUpsample,
                                          PixelShuffleUpsample, transposed_conv_padding)

CLASSES = [NearestUpsample, BilinearUpsample, DeconvUpsample, PixelShuffleUpsample]


def test_nearest_repeats_each_pixel():
    x = torch.randn(2, 3, 4, 5)
    expected = x.repeat_interleave(3, dim=-2).repeat_interleave(3, dim=-1)
    torch.testing.assert_close(NearestUpsample(3, scale_factor=3)(x), expected)


@pytest.mark.parametrize('cls, mode, extra', [
    (NearestUpsample, 'nearest', {}),
    (BilinearUpsample, 'bilinear', dict(align_corners=False)),
    (BilinearUpsample, 'bilinear', dict(align_corners=True)),
])
def test_interpolation_equals_the_hosts_resize(cls, mode, extra):
    """mmdet FPN / mmseg UPerHead call F.interpolate(size=...) with the finer level's size."""
    module = cls(3, scale_factor=2, **extra)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(module(x, size=(9, 11)),
                               F.interpolate(x, size=(9, 11), mode=mode, **extra))
    # At exactly s x, the size form equals the scale_factor form.
    torch.testing.assert_close(module(x), F.interpolate(x, scale_factor=2, mode=mode, **extra))


@pytest.mark.parametrize('kernel_size, scale_factor, expected', [
    (3, 2, (1, 1)), (4, 2, (1, 0)), (2, 2, (0, 0)), (1, 2, (0, 1)), (5, 3, (1, 0)),
    (7, 4, (2, 1)), (8, 4, (2, 0)),
])
def test_transposed_conv_padding_gives_exactly_s_times(kernel_size, scale_factor, expected):
    padding, output_padding = transposed_conv_padding(kernel_size, scale_factor)
    assert (padding, output_padding) == expected
    assert 0 <= output_padding < scale_factor
    deconv = torch.nn.ConvTranspose2d(1, 1, kernel_size, stride=scale_factor, padding=padding,
                                      output_padding=output_padding)
    assert deconv(torch.randn(1, 1, 3, 5)).shape[-2:] == (3 * scale_factor, 5 * scale_factor)


def test_deconv_default_kernel_matches_the_forks():
    module = DeconvUpsample(4)
    deconv = module.deconv
    assert (deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding) == \
        ((3, 3), (2, 2), (1, 1), (1, 1))
    assert DeconvUpsample(4, scale_factor=4).deconv.kernel_size == (7, 7)


def test_pixel_shuffle_layout():
    """Output pixel (s i + r, s j + q) of channel c is conv channel c s^2 + r s + q at (i, j)."""
    module = PixelShuffleUpsample(2, scale_factor=3).double()
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    conv = module.upsample_conv(x)
    output = module(x)
    for channel in range(2):
        for r in range(3):
            for q in range(3):
                torch.testing.assert_close(output[0, channel, r::3, q::3],
                                           conv[0, channel * 9 + r * 3 + q])


@pytest.mark.parametrize('cls', [DeconvUpsample, PixelShuffleUpsample])
def test_learned_smaller_size_is_the_top_left_window(cls):
    module = cls(3)
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(module(x, size=(9, 11)), module(x)[..., :9, :11])
    torch.testing.assert_close(module(x, torch.randn(2, 7, 9, 11)), module(x)[..., :9, :11])


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('scale_factor', [2, 4])
@pytest.mark.parametrize('size', [None, 'odd'])
def test_forward_backward_non_square_batch_two(cls, scale_factor, size):
    module = cls(4, scale_factor=scale_factor)
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    out_size = (4 * scale_factor - 1, 5 * scale_factor + 1) if size else (5 * scale_factor,
                                                                          6 * scale_factor)
    output = module(x, size=None if size is None else out_size)
    assert output.shape == (2, 4) + out_size
    output.square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize('cls', CLASSES)
def test_output_size_9x11_from_5x6(cls):
    assert cls(4)(torch.randn(2, 4, 5, 6), size=(9, 11)).shape == (2, 4, 9, 11)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('size', [None, (3, 5)])
def test_gradcheck(cls, size):
    module = cls(2).double()
    x = torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda inp: module(inp, size=size), (x,))


@pytest.mark.parametrize('cls, expected', [
    (NearestUpsample, 0), (BilinearUpsample, 0),
    (DeconvUpsample, 256 * 256 * 9 + 256),
    (PixelShuffleUpsample, 256 * 256 * 4 * 9 + 256 * 4),
])
def test_builds_from_the_common_config_and_parameter_count(cls, expected):
    module = build_upsampler(dict(type=cls.__name__, in_channels=256, scale_factor=2,
                                  guide_channels=256))
    assert isinstance(module, cls) and not module.requires_guide
    assert sum(p.numel() for p in module.parameters()) == expected


def test_initialisation_is_xavier_uniform_with_zero_bias():
    for conv in (DeconvUpsample(64).deconv, PixelShuffleUpsample(64).upsample_conv):
        fan_in = conv.weight.shape[1] * 9
        fan_out = conv.weight.shape[0] * 9
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert 0.9 * bound < conv.weight.abs().max() <= bound
        assert not conv.bias.any()


@pytest.mark.parametrize('cls, arguments, error, names', [
    (NearestUpsample, dict(scale_factor=1), ValueError, 'scale_factor'),
    (BilinearUpsample, dict(scale_factor=2.5), ValueError, 'scale_factor'),
    (BilinearUpsample, dict(align_corners='no'), TypeError, 'align_corners'),
    (DeconvUpsample, dict(upsample_kernel=0), ValueError, 'upsample_kernel'),
    (PixelShuffleUpsample, dict(upsample_kernel=2), ValueError, 'upsample_kernel'),
    (PixelShuffleUpsample, dict(in_channels=-1), ValueError, 'in_channels'),
])
def test_bad_arguments_name_the_argument(cls, arguments, error, names):
    with pytest.raises(error, match=names):
        cls(**dict(dict(in_channels=4), **arguments))


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('x, size, error, names', [
    (torch.randn(2, 3, 4, 5), None, ValueError, 'in_channels'),
    (torch.randn(2, 4, 4, 5, 1), None, ValueError, 'x'),
    (torch.randn(2, 4, 4, 5), (9, 10), ValueError, 'size'),
])
def test_bad_inputs_name_the_argument(cls, x, size, error, names):
    with pytest.raises(error, match=names):
        cls(4)(x, size=size)
