"""Grouped point sampling: the grid_sample reference against a per-point brute force, the fast
path (PointSample) against the reference, and its deterministic backward."""
import math

import pytest
import torch

from mmdynup.ops import dispatch, point_sampling
from mmdynup.ops.pointwise import pointwise
from mmdynup.ops.point_sampling import (BILINEAR, PADDING_CODES, SAMPLING_BACKWARDS,
                                        bilinear_resize, deterministic_sampling_backward, is_permuted_contiguous,
                                        pixel_centres, point_sample, point_sample_implementation,
                                        point_sample_reference, sampling_backward,
                                        subpixel_point_sample, subpixel_positions)


def bilinear_brute_force(image, px, py, padding_mode):
    """Bilinear value of ``image`` (C, H, W) at position (px, py) in pixels (centres at k + 0.5),
    written corner by corner; differentiable in ``image``, ``px`` and ``py``."""
    _, height, width = image.shape
    u, v = px - 0.5, py - 0.5
    if padding_mode == 'border':
        u, v = u.clamp(0, width - 1), v.clamp(0, height - 1)
    left, top = math.floor(u.item()), math.floor(v.item())
    value = image.new_zeros(image.shape[0])
    for row in (top, top + 1):
        for col in (left, left + 1):
            if 0 <= row < height and 0 <= col < width:
                weight = (1 - (u - col).abs()) * (1 - (v - row).abs())
                value = value + weight * image[:, row, col]
    return value


def point_sample_brute_force(x, positions, groups, padding_mode):
    batch, channels = x.shape[:2]
    per_group = channels // groups
    points = positions.shape[2:-1]
    out = x.new_zeros(batch, groups, per_group, *points)
    for b in range(batch):
        for g in range(groups):
            image = x[b, g * per_group:(g + 1) * per_group]
            for index in torch.cartesian_prod(*[torch.arange(n) for n in points]).view(
                    -1, len(points)).tolist():
                px, py = positions[(b, g, *index)]
                out[(b, g, slice(None), *index)] = bilinear_brute_force(image, px, py,
                                                                        padding_mode)
    return out


def random_positions(batch, groups, points, height, width, margin=1.5):
    """Positions that cover the image and leave it by up to ``margin`` pixels on every side."""
    unit = torch.rand(batch, groups, *points, 2, dtype=torch.float64)
    extent = torch.tensor([width, height], dtype=torch.float64)
    return unit * (extent + 2 * margin) - margin


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
@pytest.mark.parametrize('groups,points', [(1, (5,)), (3, (2, 3, 4))])
def test_reference_equals_brute_force(padding_mode, groups, points):
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    positions = random_positions(2, groups, points, 4, 5).requires_grad_(True)
    out = point_sample_reference(x, positions, groups, padding_mode)
    assert out.shape == (2, groups, 6 // groups, *points)
    expected = point_sample_brute_force(x, positions, groups, padding_mode)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)

    grad_output = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, positions), grad_output)
    expected_grads = torch.autograd.grad(expected, (x, positions), grad_output)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-12, rtol=0)


def test_outside_corners_are_zero_or_clamped():
    x = torch.arange(1., 7.).view(1, 1, 2, 3)
    # Left of pixel (0, 0)'s centre by half a pixel: half of the value with zeros, all with border.
    positions = torch.tensor([0.0, 0.5]).view(1, 1, 1, 2)
    assert point_sample(x, positions, 1, 'zeros').item() == pytest.approx(0.5)
    assert point_sample(x, positions, 1, 'border').item() == pytest.approx(1.0)
    far = torch.tensor([-5.0, 9.0]).view(1, 1, 1, 2)
    assert point_sample(x, far, 1, 'zeros').item() == 0
    assert point_sample(x, far, 1, 'border').item() == 4.0  # bottom-left pixel


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_dispatcher_equals_reference_and_accepts_any_strides(padding_mode):
    x = torch.randn(2, 4, 3, 5)
    positions = random_positions(2, 2, (5, 3), 3, 5).float()
    strided = positions.transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous()
    expected = point_sample_reference(x, positions, 2, padding_mode)
    torch.testing.assert_close(point_sample(x, positions, 2, padding_mode), expected)
    torch.testing.assert_close(point_sample(x, strided, 2, padding_mode), expected)


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_gradcheck(padding_mode):
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    positions = random_positions(1, 2, (2, 3), 3, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, p: point_sample_reference(x, p, 2, padding_mode), (x, positions))


def test_half_precision_input_is_read_at_float32_positions():
    x = torch.randn(1, 2, 3, 300).bfloat16()
    positions = random_positions(1, 1, (4, 5), 3, 300).float()
    out = point_sample(x, positions, 1, 'zeros')
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, point_sample(x.float(), positions, 1, 'zeros').bfloat16())
    offsets = torch.zeros(1, 1, 300, 2, 1, 2, 2, dtype=torch.bfloat16)
    assert subpixel_positions(offsets, 2, (1, 2)).dtype == torch.float32


def test_pixel_centres():
    centres = pixel_centres(2, 3, torch.float64, 'cpu')
    assert centres.shape == (2, 1, 3, 1, 2)
    assert centres[1, 0, 2, 0].tolist() == [2.5, 1.5]  # (x, y) of row 1, column 2


@pytest.mark.parametrize('shared_block', [False, True])
def test_subpixel_positions_against_loops(shared_block):
    scale, height, width = 3, 2, 3
    sub = 1 if shared_block else scale
    offsets = torch.randn(2, 4, height, sub, width, sub, 2, dtype=torch.float64)
    size = (5, 8)
    positions = subpixel_positions(offsets, scale, size)
    assert positions.shape == (2, 4, *size, 2)
    for row in range(size[0]):
        for col in range(size[1]):
            i, a = divmod(row, scale)
            j, b = divmod(col, scale)
            offset = offsets[:, :, i, 0 if shared_block else a, j, 0 if shared_block else b]
            expected = offset + torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64)
            torch.testing.assert_close(positions[:, :, row, col], expected, atol=0, rtol=0)


def test_subpixel_positions_rejects_size_beyond_the_grid():
    with pytest.raises(ValueError, match='size'):
        subpixel_positions(torch.zeros(1, 2, 2, 3, 2, 2), 2, (5, 6))


@pytest.mark.parametrize('kwargs,match', [
    (dict(padding_mode='reflection'), 'padding_mode'),
    (dict(positions=torch.zeros(1, 2, 3, 3)), 'positions must have shape'),
    (dict(positions=torch.zeros(2, 2, 3, 2)), 'batch'),
    (dict(groups=4), 'groups'),
    (dict(x=torch.zeros(1, 5, 3, 3), groups=2), 'divisible by groups'),
    (dict(positions=torch.zeros(1, 2, 3, 2, dtype=torch.int64)), 'floating-point'),
])
def test_bad_arguments_are_named(kwargs, match):
    arguments = dict(x=torch.zeros(1, 4, 3, 3), positions=torch.zeros(1, 2, 3, 2), groups=2,
                     padding_mode='zeros')
    arguments.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        point_sample_reference(**arguments)


# --- fast path (PointSample) against the reference ----------------------------------------------

#: PointSample with ATen's sampling kernels, and with the C++ CPU kernel (built on first use).
FAST = ('tiled', 'native')


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_native_is_the_cpu_default_and_bit_identical_across_thread_counts(padding_mode):
    x, offsets, size = subpixel_case(torch.float32)
    assert point_sample_implementation(None, x, offsets) == 'native'
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(sampled_with_grads(
                lambda x, o: subpixel_point_sample(x, o, 2, size, 3, padding_mode), x, offsets,
                torch.ones(2, 3, 2, *size))[0])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results))



def sampled_with_grads(function, x, offsets, grad_output=None):
    """Output and gradients (x, offsets) of ``function(x, offsets)`` for one upstream gradient."""
    x = x.detach().clone().requires_grad_()
    offsets = offsets.detach().clone().requires_grad_()
    out = function(x, offsets)
    if grad_output is None:
        grad_output = torch.randn_like(out)
    return (out, *torch.autograd.grad(out, (x, offsets), grad_output)), grad_output


def subpixel_case(dtype, shared_block=False, size=(7, 9)):
    """x (2, 6, 4, 5), offsets (2, 3, 4, s or 1, 5, s or 1, 2) reaching outside the image."""
    sub = 1 if shared_block else 2
    x = torch.randn(2, 6, 4, 5, dtype=dtype)
    offsets = 1.5 * torch.randn(2, 3, 4, sub, 5, sub, 2, dtype=dtype)
    return x, offsets, size


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
@pytest.mark.parametrize('shared_block,size', [(False, (8, 10)), (False, (7, 9)),
                                               (True, (7, 10))])
def test_subpixel_fast_equals_reference(padding_mode, shared_block, size, impl):
    x, offsets, size = subpixel_case(torch.float64, shared_block, size)
    initial = torch.randn(3, 1, 2, 1, 2 if not shared_block else 1, 2, dtype=torch.float64)
    if shared_block:
        initial = initial[:, :, :1]

    def run(impl):
        return lambda x, o: subpixel_point_sample(x, o, 2, size, 3, padding_mode,
                                                  initial=initial, offset_scale=0.3, impl=impl)

    expected, grad_output = sampled_with_grads(run('reference'), x, offsets)
    actual, _ = sampled_with_grads(run(impl), x, offsets, grad_output)
    for fast, reference in zip(actual, expected):
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=0)


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_fast_equals_reference_and_gradcheck(padding_mode, impl):
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    positions = random_positions(2, 3, (3, 4), 4, 5)
    expected, grad_output = sampled_with_grads(
        lambda x, p: point_sample(x, p, 3, padding_mode, impl='reference'), x, positions)
    actual, _ = sampled_with_grads(lambda x, p: point_sample(x, p, 3, padding_mode, impl=impl),
                                   x, positions, grad_output)
    for fast, reference in zip(actual, expected):
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=0)
    x, offsets, size = subpixel_case(torch.float64)
    x, offsets = x[:1, :, :3, :3], offsets[:1, :2, :3, :, :3].contiguous()
    assert torch.autograd.gradcheck(
        lambda x, o: subpixel_point_sample(x, o, 2, (5, 6), 2, padding_mode, impl=impl),
        (x.requires_grad_(), offsets.requires_grad_()))


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_float32_ratio_rule(padding_mode, impl):
    """err(fast, float32) <= 2 err(reference, float32) + 1e-6, both against the float64
    reference, for the output and both gradients (flash-attention's rule)."""
    x, offsets, size = subpixel_case(torch.float64)

    def run(impl):
        return lambda x, o: subpixel_point_sample(x, o, 2, size, 3, padding_mode, impl=impl)

    exact, grad_output = sampled_with_grads(run('reference'), x, offsets)
    single = [tensor.float() for tensor in (x, offsets, grad_output)]
    reference, _ = sampled_with_grads(run('reference'), *single[:2], single[2])
    fast, _ = sampled_with_grads(run(impl), *single[:2], single[2])
    for truth, low, candidate in zip(exact, reference, fast):
        reference_error = (low.double() - truth).abs().max().item()
        assert (candidate.double() - truth).abs().max().item() <= 2 * reference_error + 1e-6


def test_bfloat16_input_and_autocast_follow_the_reference():
    x, offsets, size = subpixel_case(torch.float32)
    for impl in ('reference', 'tiled'):
        out = subpixel_point_sample(x.bfloat16(), offsets, 2, size, 3, 'border', impl=impl)
        assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        subpixel_point_sample(x.bfloat16(), offsets, 2, size, 3, 'border', impl='tiled'),
        subpixel_point_sample(x.bfloat16(), offsets, 2, size, 3, 'border', impl='reference'))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        fast, _ = sampled_with_grads(
            lambda x, o: subpixel_point_sample(x, o, 2, size, 3, 'zeros', impl='tiled'),
            x.bfloat16(), offsets)
        reference, _ = sampled_with_grads(
            lambda x, o: subpixel_point_sample(x, o, 2, size, 3, 'zeros', impl='reference'),
            x.bfloat16(), offsets, _)
    for actual, expected in zip(fast, reference):
        assert actual.dtype == expected.dtype
        torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_deterministic_backward_equals_aten_and_repeats_bitwise(padding_mode):
    features = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    grid = torch.rand(3, 7, 8, 2, dtype=torch.float64) * 2.6 - 1.3  # leaves the image
    grid[0, 0, :3] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1 - 1 / 6, -1 + 1 / 5]])  # edges
    grad_output = torch.randn(3, 4, 7, 8, dtype=torch.float64)
    expected = torch.ops.aten.grid_sampler_2d_backward(
        grad_output, features, grid, BILINEAR, PADDING_CODES[padding_mode], False, [True, True])
    actual = deterministic_sampling_backward(grad_output, features, grid, padding_mode)
    for ours, aten in zip(actual, expected):
        torch.testing.assert_close(ours, aten, atol=1e-12, rtol=0)
    again = deterministic_sampling_backward(grad_output, features, grid, padding_mode)
    assert all(torch.equal(first, second) for first, second in zip(actual, again))
    assert deterministic_sampling_backward(grad_output, features, grid, padding_mode,
                                           input_grad=False)[0] is None


def test_deterministic_mode_selects_our_backward_on_cuda_only():
    assert not torch.are_deterministic_algorithms_enabled()
    assert sampling_backward(torch.device('cuda')) == 'fused'
    torch.use_deterministic_algorithms(True)
    try:
        assert sampling_backward(torch.device('cuda', 0)) == 'deterministic'
        assert sampling_backward('cuda') == 'deterministic'
        assert sampling_backward(torch.device('cpu')) == 'fused'  # ATen's CPU kernel is
    finally:
        torch.use_deterministic_algorithms(False)
    assert set(SAMPLING_BACKWARDS) == {'fused', 'deterministic'}


def test_fast_backward_runs_the_selected_kernel(monkeypatch):
    """The Function asks sampling_backward at backward time; forcing 'deterministic' on the CPU
    runs our kernel (same gradients as ATen's, bit-identical twice)."""
    x, offsets, size = subpixel_case(torch.float32)

    def gradients():
        return sampled_with_grads(
            lambda x, o: subpixel_point_sample(x, o, 2, size, 3, 'border', impl='tiled'),
            x, offsets, torch.ones(2, 3, 2, *size))[0]

    fused = gradients()
    calls = []

    def deterministic(*args, **kwargs):
        calls.append(1)
        return deterministic_sampling_backward(*args, **kwargs)

    monkeypatch.setattr(point_sampling, 'sampling_backward', lambda device: 'deterministic')
    monkeypatch.setattr(point_sampling, 'deterministic_sampling_backward', deterministic)
    first, second = gradients(), gradients()
    assert len(calls) == 2
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    for ours, aten in zip(first, fused):
        torch.testing.assert_close(ours, aten, atol=1e-5, rtol=1e-5)


def test_implicit_reference_gives_way_in_deterministic_cuda_mode(monkeypatch):
    """Under torch.compile 'auto' means the reference, whose CUDA backward raises in
    deterministic mode: point sampling then takes PointSample; an explicit 'reference' stays."""
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    positions = torch.rand(1, 1, 2, 2, 2)
    monkeypatch.setattr(point_sampling, 'is_compiling', lambda: True)
    monkeypatch.setattr(dispatch, 'is_compiling', lambda: True)
    assert point_sample_implementation(None, x, positions) == 'reference'
    monkeypatch.setattr(point_sampling, 'sampling_backward', lambda device: 'deterministic')
    assert point_sample_implementation(None, x, positions) == 'tiled'
    assert point_sample_implementation('reference', x, positions) == 'reference'
    with torch.no_grad():
        assert point_sample_implementation(None, x, positions) == 'reference'


@pytest.mark.parametrize('impl', FAST)
def test_offset_gradient_keeps_the_offsets_layout(impl):
    x = torch.randn(1, 4, 3, 5)
    raw = torch.randn(1, 2, 2, 2, 2, 3, 5, requires_grad=True)  # (B, xy, G, a, b, H, W)
    offsets = raw.permute(0, 2, 5, 3, 6, 4, 1)
    subpixel_point_sample(x, offsets, 2, (6, 10), 2, 'border', impl=impl).sum().backward()
    assert raw.grad.is_contiguous()
    assert is_permuted_contiguous(offsets.shape, offsets.stride())
    assert not is_permuted_contiguous((2, 3), (1, 1))


def test_initial_must_be_a_constant():
    x, offsets, size = subpixel_case(torch.float32)
    with pytest.raises(ValueError, match='initial must not require grad'):
        subpixel_point_sample(x, offsets, 2, size, 3, initial=torch.zeros(2, requires_grad=True))
    with pytest.raises(ValueError, match='s or 1'):
        subpixel_point_sample(x, offsets[:, :, :, :, :, :1].expand(-1, -1, -1, 2, -1, 3, -1),
                              2, size, 3)


@pytest.mark.parametrize('impl', FAST)
def test_input_gradient_is_summed_in_place(impl):
    """x feeding both the sampling and an offset convolution (DySample): the engine adds the
    second gradient into PointSample's in place (no third x-sized buffer for the sum)."""
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    conv = torch.nn.Conv2d(8, 2 * 2 * 4, 1)
    offsets = pointwise(x, conv)[0].reshape(2, 2, 2, 2, 2, 5, 5).permute(0, 2, 5, 3, 6, 4, 1)
    out = subpixel_point_sample(x, offsets, 2, (10, 10), 2, 'border', impl=impl)
    with torch.profiler.profile(record_shapes=True) as profile:
        out.backward(torch.ones_like(out))
    sums = {event.key for event in profile.key_averages(group_by_input_shape=True)
            if event.input_shapes[:2] == [[2, 8, 5, 5], [2, 8, 5, 5]]}
    # The native kernel's image gradient is channels-last (no copy out of its planes); a leaf's
    # AccumulateGrad then copies it into the leaf's own layout, after the in-place sum.
    assert sums == ({'aten::add_', 'aten::copy_'} if impl == 'native' else {'aten::add_'})


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('size', [(9, 14), (3, 4), (1, 7)])
def test_bilinear_resize_by_point_sampling_equals_interpolate(align_corners, size, monkeypatch):
    """The deterministic-mode form of the resize (forced here) is F.interpolate's, outputs and
    gradients, and runs no upsample_bilinear2d backward."""
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)

    def resize(x):
        return bilinear_resize(x, size, align_corners)

    reference = x.clone().requires_grad_()
    expected = resize(reference)
    grad_output = torch.randn_like(expected)
    expected.backward(grad_output)
    monkeypatch.setattr(point_sampling, 'sampling_backward', lambda device: 'deterministic')
    x = x.clone().requires_grad_()
    with torch.profiler.profile() as profile:
        out = resize(x)
        out.backward(grad_output)
    assert 'aten::upsample_bilinear2d_backward' not in {e.key for e in profile.key_averages()}
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(x.grad, reference.grad, atol=1e-12, rtol=0)
