"""Property tests (hypothesis, bounded): shapes, scales, groups and kernel sizes drawn at random.

* every upsampler's output has the documented shape, for any size it accepts;
* every fast path equals the reference through the dispatch switch (ratio rule against float64,
  outputs and gradients), for the ops and for whole upsamplers;
* reassembly with uniform kernels is a k x k box filter, dilated by s, of the nearest-upsampled
  input (equivalently: the nearest upsampling of a k x k box filter);
* DySample with zero offsets is bilinear interpolation (align_corners=False), all four variants;
* the output is finite for any finite input.

Examples are derandomised (the same ones every run), without a database, and capped in number.
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdynup import build_upsampler
from mmdynup.ops.dispatch import triton_available, use_implementation
from mmdynup.ops.reassembly import reassemble

from .upsampler_inputs import UPSAMPLERS

BOUNDED = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
FEW = settings(BOUNDED, max_examples=20)

#: Triton compiles its kernels for every new shape: few examples (each costs seconds).
TRITON_EXAMPLES = settings(BOUNDED, max_examples=6)
NEEDS_TRITON = pytest.mark.skipif(not (torch.cuda.is_available() and triton_available()),
                                  reason='the Triton kernels need a CUDA device and triton')
#: Upsamplers whose result goes through the dispatched ops (reassembly, local similarity).
DISPATCHED = ['CARAFE', 'FADE', 'FADEECCV', 'FADELite', 'SemiShiftUp', 'SAPAI', 'SAPAB', 'SAPAG',
              'SAPABase', 'A2U', 'FreqFusion']


def upsampler_config(name: str, scale_factor: int, channels: int) -> dict:
    """A small build of ``name`` that accepts ``scale_factor`` and ``channels``."""
    config = dict(type=name, in_channels=channels, scale_factor=scale_factor,
                  guide_channels=channels)
    if name in ('CARAFE', 'FreqFusion'):
        config.update(compressed_channels=8)
    if name in ('FADE', 'FADEECCV', 'SemiShiftUp', 'SAPAB', 'SAPAG'):
        config.update(embedding_dim=8)
    if name.startswith('DySample'):
        config.update(groups=2)
    if name == 'SAPADeform':
        config.update(groups=2, embedding_dim=4, num_point=4)
    return config


def channels_for(name: str, scale_factor: int) -> int:
    if name in ('A2U', 'SAPABase'):
        return 64  # GroupNorm(32) with two channels per group: 1 x 1 maps normalise
    if name in ('DySampleS', 'DySampleSPlus'):
        return 2 * scale_factor ** 2  # 'pl' style: divisible by s^2 and by the 2 groups
    return 8


@st.composite
def upsampler_cases(draw, names=tuple(UPSAMPLERS)):
    name = draw(st.sampled_from(names))
    scale_factor = 2 if name in ('FADEECCV', 'IndexNet', 'A2U', 'FreqFusion') else draw(st.integers(2, 4))
    height, width = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    out_h = draw(st.integers(1, scale_factor * height))
    out_w = draw(st.integers(1, scale_factor * width))
    batch = draw(st.integers(1, 2))
    return name, scale_factor, (batch, height, width), (out_h, out_w)


def build_case(name, scale_factor, seed=0):
    torch.manual_seed(seed)
    return build_upsampler(upsampler_config(name, scale_factor, channels_for(name, scale_factor)))


def case_inputs(upsampler, shape, size, scale=1.0, seed=0):
    batch, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, upsampler.in_channels, height, width, generator=generator) * scale
    guide = None
    if upsampler.requires_guide:
        guide = torch.randn(batch, upsampler.guide_channels, *size, generator=generator) * scale
    return x, guide


# --- shapes -------------------------------------------------------------------------------------
@BOUNDED
@given(case=upsampler_cases())
def test_output_shape(case):
    name, scale_factor, shape, size = case
    upsampler = build_case(name, scale_factor)
    x, guide = case_inputs(upsampler, shape, size)
    batch, height, width = shape
    with torch.no_grad():
        full = upsampler(x, guide) if guide is None else None
        out = upsampler(x, guide, size=size)
    assert out.shape == (batch, upsampler.out_channels, *size)
    if full is not None:
        assert full.shape == (batch, upsampler.out_channels, scale_factor * height,
                              scale_factor * width)


# --- fast paths == reference --------------------------------------------------------------------
@st.composite
def reassembly_cases(draw):
    kernel_size = draw(st.sampled_from([1, 3, 5, 7]))
    scale_factor = draw(st.integers(1, 4))
    groups = draw(st.sampled_from([1, 2, 4]))
    channels = groups * draw(st.integers(1, 3))
    batch, height, width = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    out_h = draw(st.integers(1, scale_factor * height))
    out_w = draw(st.integers(1, scale_factor * width))
    normalised = draw(st.booleans())
    return kernel_size, scale_factor, groups, (batch, channels, height, width), (out_h, out_w), \
        normalised


def ratio_rule(fast, reference, truth, name):
    """``err(fast) <= 2 * err(reference) + floor``, errors against the float64 truth."""
    floor = 1e-6 * max(1.0, truth.abs().max().item())
    fast_error = (fast.double() - truth).abs().max().item()
    reference_error = (reference.double() - truth).abs().max().item()
    assert fast_error <= 2 * reference_error + floor, (name, fast_error, reference_error)


def reassembly_and_gradients(x, kernels, kernel_size, scale_factor, impl, grad_out):
    x = x.detach().clone().requires_grad_()
    kernels = kernels.detach().clone().requires_grad_()
    out = reassemble(x, kernels, kernel_size, scale_factor, impl=impl)
    out.backward(grad_out)
    return out.detach(), x.grad, kernels.grad


@BOUNDED
@given(case=reassembly_cases())
def test_tiled_reassembly_equals_reference(case):
    check_fast_reassembly('tiled', 'cpu', case)


@NEEDS_TRITON
@TRITON_EXAMPLES
@given(case=reassembly_cases())
def test_triton_reassembly_equals_reference(case):
    check_fast_reassembly('triton', 'cuda', case)


def check_fast_reassembly(impl, device, case):
    kernel_size, scale_factor, groups, x_shape, size, normalised = case
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=generator, dtype=torch.float64)
    kernels = torch.randn(x_shape[0], groups, kernel_size ** 2, *size, generator=generator,
                          dtype=torch.float64)
    if normalised:
        kernels = kernels.softmax(dim=2)
    grad_out = torch.randn(x_shape[0], x_shape[1], *size, generator=generator,
                           dtype=torch.float64)
    arguments = (kernel_size, scale_factor)
    truth = reassembly_and_gradients(x, kernels, *arguments, 'reference', grad_out)
    single = [tensor.float().to(device) for tensor in (x, kernels, grad_out)]
    reference = reassembly_and_gradients(single[0], single[1], *arguments, 'reference', single[2])
    fast = reassembly_and_gradients(single[0], single[1], *arguments, impl, single[2])
    for name, fast_tensor, reference_tensor, true_tensor in zip(
            ('output', 'grad x', 'grad kernels'), fast, reference, truth):
        ratio_rule(fast_tensor.cpu(), reference_tensor.cpu(), true_tensor, name)


@FEW
@given(case=upsampler_cases(names=tuple(DISPATCHED)))
def test_tiled_upsamplers_equal_reference(case):
    check_fast_upsampler('tiled', 'cpu', case)


@NEEDS_TRITON
@TRITON_EXAMPLES
@given(case=upsampler_cases(names=tuple(DISPATCHED)))
def test_triton_upsamplers_equal_reference(case):
    check_fast_upsampler('triton', 'cuda', case)


def check_fast_upsampler(impl, device, case):
    """Whole upsamplers under ``use_implementation``: output and every gradient."""
    name, scale_factor, shape, size = case
    results = {}
    for implementation in ('reference', impl):
        upsampler = build_case(name, scale_factor).to(device)
        x, guide = case_inputs(upsampler, shape, size)
        x = x.to(device).requires_grad_()
        guide = None if guide is None else guide.to(device)
        with use_implementation(implementation):
            out = upsampler(x, guide, size=size)
        out.backward(torch.linspace(-1, 1, out.numel(), device=device).view(out.shape))
        results[implementation] = [out.detach(), x.grad] + [
            parameter.grad for parameter in upsampler.parameters() if parameter.grad is not None]
    for fast, reference in zip(results[impl], results['reference']):
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)


# --- uniform kernels: a box filter ------------------------------------------------------------
@pytest.mark.parametrize('impl', ['reference', 'tiled'])
@BOUNDED
@given(case=reassembly_cases())
def test_uniform_kernels_are_a_box_filter_of_the_nearest_upsampled_input(impl, case):
    """With every tap 1/k^2, pixel (i, j) averages x over the k x k window around its parent
    (i // s, j // s) with zero padding: on the nearest-upsampled input that is a k x k box filter
    with dilation s (tap u reads pixel i + s (u - k // 2), whose parent is i // s + u - k // 2)."""
    kernel_size, scale_factor, groups, x_shape, size, _ = case
    batch, channels, height, width = x_shape
    radius = kernel_size // 2
    x = torch.randn(x_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    uniform = torch.full((batch, groups, kernel_size ** 2, *size), 1.0 / kernel_size ** 2,
                         dtype=torch.float64)
    out = reassemble(x, uniform, kernel_size, scale_factor, impl=impl)
    nearest = x.repeat_interleave(scale_factor, dim=2).repeat_interleave(scale_factor, dim=3)
    box = torch.full((channels, 1, kernel_size, kernel_size), 1.0 / kernel_size ** 2,
                     dtype=torch.float64)
    dilated_box = F.conv2d(nearest, box, padding=scale_factor * radius, dilation=scale_factor,
                           groups=channels)
    torch.testing.assert_close(out, dilated_box[..., :size[0], :size[1]])
    # The same as box filtering at low resolution, then nearest upsampling.
    low_res_box = F.avg_pool2d(x, kernel_size, stride=1, padding=radius, count_include_pad=True)
    expected = low_res_box.repeat_interleave(scale_factor, 2).repeat_interleave(scale_factor, 3)
    torch.testing.assert_close(out, expected[..., :size[0], :size[1]])


# --- DySample: zero offsets ---------------------------------------------------------------------
@BOUNDED
@given(name=st.sampled_from(['DySample', 'DySamplePlus', 'DySampleS', 'DySampleSPlus']),
       scale_factor=st.integers(2, 4), groups=st.sampled_from([1, 2, 4]),
       height=st.integers(1, 6), width=st.integers(1, 6))
def test_dysample_with_zero_offsets_is_bilinear_interpolation(name, scale_factor, groups,
                                                               height, width):
    channels = groups * scale_factor ** 2
    upsampler = build_upsampler(dict(type=name, in_channels=channels, scale_factor=scale_factor,
                                     groups=groups)).double()
    torch.nn.init.zeros_(upsampler.offset.weight)
    torch.nn.init.zeros_(upsampler.offset.bias)
    x = torch.randn(2, channels, height, width, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    expected = F.interpolate(x, scale_factor=scale_factor, mode='bilinear', align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(upsampler(x), expected)


# --- finite in, finite out ----------------------------------------------------------------------
@FEW
@given(case=upsampler_cases(), log_scale=st.integers(-3, 3), constant=st.booleans())
def test_finite_input_gives_finite_output(case, log_scale, constant):
    """Inputs from 1e-3 to 1e3 in magnitude, and constant inputs (zero variance for the
    LayerNorm / GroupNorm of SAPA, equal scores for every softmax)."""
    name, scale_factor, shape, size = case
    upsampler = build_case(name, scale_factor)
    x, guide = case_inputs(upsampler, shape, size, scale=10.0 ** log_scale)
    if constant:
        x = torch.full_like(x, 10.0 ** log_scale)
        guide = None if guide is None else torch.full_like(guide, -10.0 ** log_scale)
    x.requires_grad_()
    out = upsampler(x, guide, size=size)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(parameter.grad).all() for parameter in upsampler.parameters()
               if parameter.grad is not None)
