"""CARAFE against a literal transcription of mmcv's ``CARAFEPack`` + ``carafe_naive`` semantics."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from mmdynup import build_upsampler
from mmdynup.converters.carafe import convert_carafe_pack
from mmdynup.upsamplers.carafe import CARAFE, normalise_kernels


def carafe_pack_reference(module: CARAFE, x: torch.Tensor) -> torch.Tensor:
    """mmcv's forward: compress, encode, pixel shuffle, softmax per group, then reassemble with
    the unfolded k x k windows of each parent pixel repeated s x s times."""
    k, groups, s = module.up_kernel, module.up_group, module.scale_factor
    masks = module.content_encoder(module.channel_compressor(x))
    masks = F.pixel_shuffle(masks, s)
    batch, mask_channels, out_h, out_w = masks.shape
    masks = masks.view(batch, groups, k * k, out_h, out_w).softmax(dim=2)
    channels, height, width = x.shape[1:]
    windows = F.unfold(x, k, padding=k // 2).view(batch, groups, channels // groups, k * k,
                                                   height, width)
    windows = windows.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
    out = torch.einsum('bgcthw,bgthw->bgchw', windows, masks)
    return out.reshape(batch, channels, out_h, out_w)


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Parameters large enough that the kernels are far from uniform."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.3)
    return module


@pytest.mark.parametrize('arguments', [
    dict(),
    dict(up_kernel=3, encoder_kernel=5, compressed_channels=8),
    dict(up_group=2, encoder_dilation=2),
    dict(scale_factor=3, up_kernel=3, encoder_kernel=1),
    dict(scale_factor=4, up_group=4, compressed_channels=4),
])
def test_matches_carafe_pack_reference_with_gradients(arguments):
    arguments = dict(dict(in_channels=8, compressed_channels=16), **arguments)
    module = randomise(CARAFE(**arguments)).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64, requires_grad=True)
    x_reference = x.detach().clone().requires_grad_(True)
    output = module(x)
    assert output.shape == (2, 8, 5 * module.scale_factor, 7 * module.scale_factor)
    grad_output = torch.randn_like(output)
    output.backward(grad_output)
    ours = {name: p.grad.clone() for name, p in module.named_parameters()}
    module.zero_grad()
    expected = carafe_pack_reference(module, x_reference)
    expected.backward(grad_output)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(x.grad, x_reference.grad)
    for name, parameter in module.named_parameters():
        torch.testing.assert_close(ours[name], parameter.grad, msg=name)


def test_smaller_size_is_the_top_left_window_of_the_full_output():
    module = randomise(CARAFE(6, scale_factor=2, compressed_channels=4)).double()
    x = torch.randn(2, 6, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(module(x, size=(9, 11)), module(x)[..., :9, :11])
    guide = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    torch.testing.assert_close(module(x, guide), module(x)[..., :9, :11])


@pytest.mark.parametrize('scale_factor', [2, 4])
@pytest.mark.parametrize('size', [None, (9, 11)])
def test_forward_backward_non_square_batch_two(scale_factor, size):
    module = CARAFE(8, scale_factor=scale_factor, compressed_channels=4)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    output = module(x, size=size)
    assert output.shape == (2, 8) + (size or (5 * scale_factor, 6 * scale_factor))
    output.square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize('size', [None, (3, 5)])
def test_gradcheck(size):
    module = randomise(CARAFE(2, scale_factor=2, up_kernel=3, up_group=2,
                              compressed_channels=3)).double()
    x = torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda inp: module(inp, size=size), (x,))


def test_normalise_kernels_softmax_per_group():
    scores = torch.randn(2, 3 * 9, 4, 5, dtype=torch.float64)
    kernels = normalise_kernels(scores, groups=3)
    assert kernels.shape == (2, 3, 9, 4, 5)
    torch.testing.assert_close(kernels.sum(dim=2), torch.ones(2, 3, 4, 5, dtype=torch.float64))
    torch.testing.assert_close(kernels[:, 1], scores[:, 9:18].softmax(dim=1))


def test_initialisation_follows_carafe_pack():
    module = CARAFE(256, compressed_channels=64)
    assert module.content_encoder.weight.shape == (100, 64, 3, 3)
    assert abs(module.content_encoder.weight.std().item() - 0.001) < 1e-4
    bound = math.sqrt(6 / (256 + 64))
    assert module.channel_compressor.weight.abs().max() <= bound
    assert module.channel_compressor.weight.abs().max() > 0.9 * bound
    assert not module.channel_compressor.bias.any() and not module.content_encoder.bias.any()
    # Near-zero encoder weights: every kernel starts close to a uniform k x k average.
    kernels = module.predict_kernels(torch.randn(1, 256, 4, 4), (8, 8))
    torch.testing.assert_close(kernels, torch.full_like(kernels, 1 / 25), atol=1e-2, rtol=0)


def test_parameter_count_at_256_channels_scale_2():
    module = build_upsampler(dict(type='CARAFE', in_channels=256, scale_factor=2,
                                  guide_channels=256))
    compressor = 256 * 64 + 64
    encoder = 64 * (25 * 4) * 9 + 25 * 4
    assert sum(p.numel() for p in module.parameters()) == compressor + encoder
    assert not module.requires_guide


@pytest.mark.parametrize('arguments, error, names', [
    (dict(up_kernel=4), ValueError, 'up_kernel'),
    (dict(up_kernel=2.5), TypeError, 'up_kernel'),
    (dict(up_group=3), ValueError, 'up_group'),
    (dict(encoder_kernel=4), ValueError, 'encoder_kernel'),
    (dict(compressed_channels=0), ValueError, 'compressed_channels'),
    (dict(scale_factor=1), ValueError, 'scale_factor'),
    (dict(scale_factor=2.5), ValueError, 'scale_factor'),
    (dict(in_channels=0), ValueError, 'in_channels'),
])
def test_bad_arguments_name_the_argument(arguments, error, names):
    with pytest.raises(error, match=names):
        CARAFE(**dict(dict(in_channels=8), **arguments))


def test_even_encoder_kernel_with_even_dilation_is_centred():
    module = CARAFE(8, encoder_kernel=4, encoder_dilation=2, compressed_channels=4)
    assert module(torch.randn(1, 8, 3, 5)).shape == (1, 8, 6, 10)


@pytest.mark.parametrize('x, size, error, names', [
    (torch.randn(2, 6, 4, 5), None, ValueError, 'in_channels'),
    (torch.randn(8, 4, 5), None, ValueError, 'x'),
    (torch.randint(0, 3, (2, 8, 4, 5)), None, TypeError, 'dtype'),
    (torch.randn(2, 8, 4, 5), (9, 10), ValueError, 'size'),
])
def test_bad_inputs_name_the_argument(x, size, error, names):
    with pytest.raises(error, match=names):
        CARAFE(8, compressed_channels=4)(x, size=size)


@pytest.mark.parametrize('kwargs', [
    dict(channels=16, scale_factor=2),
    dict(channels=16, scale_factor=3, up_kernel=3, up_group=4, encoder_kernel=5,
         encoder_dilation=2, compressed_channels=8),
])
def test_loads_an_mmcv_carafe_pack_state_dict(kwargs):
    """mmcv has no CPU kernel, but its module's layout and initialisation can be compared."""
    ops = pytest.importorskip('mmcv.ops', reason='mmcv with compiled ops is not installed')
    official = ops.CARAFEPack(**kwargs)
    module = convert_carafe_pack(dict(kwargs), official.state_dict()).module
    for name, tensor in official.state_dict().items():
        torch.testing.assert_close(module.state_dict()[name], tensor)
    ours = CARAFE(kwargs['channels'], **{k: v for k, v in kwargs.items() if k != 'channels'})
    for name, tensor in official.state_dict().items():
        if name.endswith('bias'):
            assert not ours.state_dict()[name].any() and not tensor.any()
        else:
            torch.testing.assert_close(ours.state_dict()[name].std(), tensor.std(), rtol=0.2,
                                       atol=0, msg=name)
