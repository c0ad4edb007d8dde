"""Grouped point sampling: the grid_sample reference against a per-point brute force."""
import math

import pytest
import torch

from mmdynup.ops.point_sampling import (pixel_centres, point_sample, point_sample_reference,
                                        subpixel_positions)


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
