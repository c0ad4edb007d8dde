"""A2U (Dai et al., CVPR 2021): the kernel generator against a per-sample transcription of the
reference README, upsampling = CARAFE reassembly, the downsampling op (fast vs reference vs the
CUDA op's formula), odd sizes, init, converter and bad input. The authors' own numbers are the
records in shared/reference/next (test_official_fixtures.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdynup.converters import convert_official
from mmdynup.ops.downsample_reassembly import (downsample_reassemble,
                                               downsample_reassemble_reference)
from mmdynup.ops.reassembly import reassemble_reference
from mmdynup.upsamplers.a2u import A2U, AffinityKernelGenerator, a2u_downsample, pooling_matrix

from .test_indexnet import assert_normal


def _noised(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator,
                                             dtype=parameter.dtype))
    return module


def _generator_spec(generator, guide):
    """One sample at a time, as the README describes the authors' loop: pooled filters, a
    depthwise stride-2 conv, GroupNorm(32) + LeakyReLU, the affinity, p * a, shuffle, softmax."""
    s, k, groups = generator.up_kernel_size, generator.encode_kernel_size, generator.groups
    padding = k // 2 if k % 2 else (k - 2) // 2
    outs_d, outs_u = [], []
    for sample in guide:
        sample = sample[None]
        c = sample.shape[1]
        maps = []
        for conv, norm in ((generator.filter_u, generator.norm_u),
                           (generator.filter_v, generator.norm_v)):
            filters = conv(F.adaptive_avg_pool2d(sample, k))[0]  # (c or 1, k, k)
            filters = filters.expand(c, k, k)[:, None]
            filtered = F.conv2d(sample, filters, stride=2, padding=padding, groups=c)
            maps.append(F.leaky_relu(norm(filtered), 0.01))
        affinity = (maps[0] * maps[1]).sum(1, keepdim=True) / math.sqrt(c)
        pooled = F.adaptive_avg_pool2d(sample, 1)
        logits_u = generator.upsample_scores(pooled) * affinity
        logits_d = generator.downsample_scores(pooled) * affinity
        up = torch.sigmoid(F.pixel_shuffle(logits_u, 2))
        up = up.view(1, s * s, groups, *up.shape[-2:])
        outs_u.append((up.softmax(1) if s > 1 else up).flatten(1, 2))
        down = logits_d.view(1, 4 * s * s, groups, *logits_d.shape[-2:]).softmax(1)
        outs_d.append(down.flatten(1, 2))
    return torch.cat(outs_d), torch.cat(outs_u)


@pytest.mark.parametrize('up_kernel_size, encode_kernel_size, share, groups', [
    (3, 6, True, 1), (3, 6, False, 1), (3, 5, False, 1), (1, 4, True, 1), (2, 3, False, 1),
    (5, 5, True, 2)])
def test_kernel_generator_follows_the_per_sample_description(up_kernel_size,
                                                             encode_kernel_size, share, groups):
    generator = _noised(AffinityKernelGenerator(32, up_kernel_size, encode_kernel_size, share,
                                                groups).double())
    guide = torch.randn(2, 32, 10, 14, dtype=torch.float64)
    out_d, out_u = generator(guide)
    taps = up_kernel_size ** 2 * groups
    assert out_d.shape == (2, 4 * taps, 5, 7) and out_u.shape == (2, taps, 10, 14)
    expected_d, expected_u = _generator_spec(generator, guide)
    torch.testing.assert_close(out_d, expected_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_u, expected_u, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('groups', [1, 2])
def test_upsampling_is_carafe_reassembly_with_the_group_major_kernels(groups):
    """The kernels are read as the authors' CUDA op reads them (channel g * s^2 + tap)."""
    up = _noised(A2U(8, guide_channels=32, groups=groups).double())
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    guide = torch.randn(2, 32, 8, 10, dtype=torch.float64)
    out_u = up.kernel_generator.upsample_kernels(*up.kernel_generator.affinity(guide))
    kernels = out_u.view(2, groups, 9, 8, 10)
    torch.testing.assert_close(up(x, guide), reassemble_reference(x, kernels, 3, 2))


def test_odd_guide_sides_are_padded_by_a_replicated_row_and_column():
    up = _noised(A2U(8, guide_channels=32).double())
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    guide = torch.randn(1, 32, 7, 9, dtype=torch.float64)
    out = up(x, guide)
    padded = F.pad(guide, (0, 1, 0, 1), mode='replicate')
    out_u = up.kernel_generator.upsample_kernels(*up.kernel_generator.affinity(padded))
    kernels = out_u.view(1, 1, 9, 8, 10)[..., :7, :9]
    torch.testing.assert_close(out, reassemble_reference(x, kernels, 3, 2))


def _downsample_by_the_formula(x, kernels, k2):
    """The CUDA op, pixel by pixel: out(p) = sum_d kernels[d](p) * x(2p + d - (s - 1))."""
    batch, channels, height, width = x.shape
    groups, out_h, out_w = kernels.shape[1], kernels.shape[3], kernels.shape[4]
    s = k2 // 2
    out = x.new_zeros(batch, channels, out_h, out_w)
    for dy in range(k2):
        for dx in range(k2):
            for p in range(out_h):
                for q in range(out_w):
                    row, col = 2 * p + dy - (s - 1), 2 * q + dx - (s - 1)
                    if 0 <= row < height and 0 <= col < width:
                        weight = kernels[:, :, dy * k2 + dx, p, q].repeat_interleave(
                            channels // groups, dim=1)
                        out[:, :, p, q] += weight * x[:, :, row, col]
    return out


@pytest.mark.parametrize('k2, groups, size', [(6, 1, (6, 8)), (2, 2, (5, 7)), (6, 2, (7, 6)),
                                              (10, 1, (4, 5)), (4, 1, (6, 6))])
def test_downsampling_fast_path_reference_and_formula_agree(k2, groups, size):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, *size, generator=generator, dtype=torch.float64, requires_grad=True)
    out_size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    kernels = torch.rand(2, groups, k2 * k2, *out_size, generator=generator,
                         dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 4, *out_size, generator=generator, dtype=torch.float64)
    reference = downsample_reassemble_reference(x, kernels, k2)
    torch.testing.assert_close(reference, _downsample_by_the_formula(x, kernels, k2))
    reference_grads = torch.autograd.grad(reference, (x, kernels), grad)
    for impl in ('tiled', 'reference'):
        fast = downsample_reassemble(x, kernels, k2, impl=impl)
        torch.testing.assert_close(fast, reference)
        for ours, expected in zip(torch.autograd.grad(fast, (x, kernels), grad),
                                  reference_grads):
            torch.testing.assert_close(ours, expected)


def test_a2u_downsample_reads_the_generator_output_group_major():
    generator = _noised(AffinityKernelGenerator(32, groups=2).double())
    x = torch.randn(2, 32, 8, 10, dtype=torch.float64)
    out_d, _ = generator(x)
    expected = downsample_reassemble_reference(x, out_d.view(2, 2, 36, 4, 5), 6)
    torch.testing.assert_close(a2u_downsample(x, out_d, 3, groups=2), expected)


@pytest.mark.parametrize('size, bins', [((10, 14), 6), ((7, 9), 5), ((4, 3), 6), ((12, 12), 1)])
def test_export_pooling_matrices_equal_adaptive_average_pooling(size, bins):
    """The form ONNX export uses (ONNX pools only when the bins divide the size)."""
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    pooled = torch.einsum('ih,bchw,jw->bcij', pooling_matrix(size[0], bins, x), x,
                          pooling_matrix(size[1], bins, x))
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, bins))


def test_init_is_xavier_normal_with_the_leaky_relu_gain():
    torch.manual_seed(0)
    generator = AffinityKernelGenerator(256, share=False)
    gain = math.sqrt(2.0 / (1 + 0.01 ** 2))
    for conv in (generator.filter_u, generator.filter_v, generator.upsample_scores,
                 generator.downsample_scores):
        assert_normal(conv.weight, gain * math.sqrt(2.0 / (conv.in_channels + conv.out_channels)))
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    for norm in (generator.norm_u, generator.norm_v):
        assert torch.equal(norm.weight, torch.ones(256)) and torch.equal(norm.bias,
                                                                          torch.zeros(256))


def test_the_upsampler_has_no_parameter_without_a_gradient():
    up = A2U(32)
    assert up.kernel_generator.downsample_scores is None
    up(torch.randn(1, 32, 3, 4), torch.randn(1, 32, 6, 8)).sum().backward()
    assert all(p.grad is not None for p in up.parameters())
    # 256 channels, share: the 10,790 parameters of SAPA's counts (+ 9,252 for out_d).
    assert sum(p.numel() for p in A2U(256).parameters()) == 10790
    assert sum(p.numel() for p in A2U(256, downsample_kernels=True).parameters()) == 20042


def _official_kwargs(c=32, s=3, k=6, share=True, groups=1):
    return dict(c=c, BatchNorm2d=None, conf=dict(MODEL=dict(
        up_kernel_size=s, encode_kernel_size=k, share=share, downupsample_group=groups)))


def test_converter_with_an_even_up_kernel_holds_the_generator_alone():
    generator = _noised(AffinityKernelGenerator(32, up_kernel_size=2, encode_kernel_size=5))
    renames = dict(norm_u='bnu.0', norm_v='bnv.0', filter_u='bconv_U.1', filter_v='bconv_V.1',
                   upsample_scores='bconv_UP.1', downsample_scores='bconv_DP.1')
    state = {renames[n.split('.')[0]] + '.' + n.split('.', 1)[1]: t
             for n, t in generator.state_dict().items()}
    conversion = convert_official('BilinearModel.InterChannelUpDown',
                                  _official_kwargs(s=2, k=5), state)
    assert isinstance(conversion.module, AffinityKernelGenerator)
    guide = torch.randn(2, 32, 6, 8)
    for ours, expected in zip(conversion.official_forward(x=guide), generator(guide)):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(_official_kwargs(), padding=1), TypeError, "unexpected arguments \\['padding'\\]"),
    (dict(c=32, BatchNorm2d=None, conf=dict(MODEL=dict(up_kernel_size=3))), TypeError,
     'missing'),
    (_official_kwargs(c=48), ValueError, 'guide_channels=48 must be a multiple of 32'),
])
def test_converter_refuses_what_the_official_class_cannot_take(kwargs, error, message):
    with pytest.raises(error, match=message):
        convert_official('BilinearModel.InterChannelUpDown', kwargs, {})


@pytest.mark.parametrize('call, error, message', [
    (lambda: A2U(32, scale_factor=4), ValueError, 'scale_factor must be 2, got 4'),
    (lambda: A2U(48), ValueError, 'guide_channels=48 must be a multiple of 32'),
    (lambda: A2U(32, up_kernel_size=4), ValueError, 'up_kernel_size must be odd'),
    (lambda: A2U(30, guide_channels=32, groups=4), ValueError,
     'in_channels=30 must be divisible by groups=4'),
    (lambda: A2U(32, share='yes'), TypeError, 'share must be True or False'),
    (lambda: AffinityKernelGenerator(32)(torch.randn(1, 32, 5, 6)), ValueError, 'even sides'),
    (lambda: downsample_reassemble(torch.randn(1, 4, 6, 6), torch.rand(1, 1, 36, 3, 3), 5),
     ValueError, 'kernel_size must be an even integer'),
])
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()
