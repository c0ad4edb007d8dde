"""Local filtering (scale-1 reassembly): the tap-loop fast path against the unfold reference."""
import pytest
import torch

from mmdynup.ops.dispatch import use_implementation
from mmdynup.ops.local_filter import LocalFilter, local_filter, local_filter_reference
from tests.ops.test_reassembly_fast import make_inputs

# (batch, channels, groups, (H, W), output (oH, oW), kernel_size, scale 1): the cases of
# tests/ops/test_reassembly_fast.py, whose make_inputs builds them.
CASES = [
    (2, 6, 1, (5, 7), (5, 7), 3, 1),
    (1, 8, 2, (6, 4), (5, 3), 5, 1),     # cropped output: the top-left window
    (2, 6, 3, (3, 2), (3, 2), 7, 1),     # window larger than the map: most taps read padding
    (1, 4, 4, (4, 5), (4, 5), 1, 1),
    (2, 4, 1, (1, 1), (1, 1), 3, 1),
]


def run(impl, x, kernels, grad, kernel_size):
    """Output and (grad x, grad kernels) of one implementation on clones of the inputs."""
    x = x.clone().requires_grad_(True)
    kernels = kernels.clone().requires_grad_(True)
    out = local_filter(x, kernels, kernel_size, impl=impl)
    return (out, *torch.autograd.grad(out, (x, kernels), grad))


@pytest.mark.parametrize('case', CASES)
def test_fast_equals_reference_in_float64(case):
    x, kernels, grad = make_inputs(case)
    expected = run('reference', x, kernels, grad, case[-2])
    for result, reference in zip(run('tiled', x, kernels, grad, case[-2]), expected):
        torch.testing.assert_close(result, reference, atol=1e-12, rtol=0)


def test_reference_is_the_formula():
    """out(c, i, j) = sum_{u, v} w[u k + v](i, j) x(c, i + u - r, j + v - r), zero outside."""
    x, kernels, _ = make_inputs((1, 2, 1, (3, 4), (3, 4), 3, 1))
    out = local_filter_reference(x, kernels, 3)
    for i in range(3):
        for j in range(4):
            value = torch.zeros(2, dtype=torch.float64)
            for u in range(3):
                for v in range(3):
                    if 0 <= i + u - 1 < 3 and 0 <= j + v - 1 < 4:
                        value += kernels[0, 0, u * 3 + v, i, j] * x[0, :, i + u - 1, j + v - 1]
            torch.testing.assert_close(out[0, :, i, j], value)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', CASES[:3])
def test_fast_error_at_most_twice_the_reference_error(case, dtype):
    """The ratio rule: err(fast) <= 2 err(reference) in the same precision (+ a float64 ulp
    floor), outputs and both gradients, against float64."""
    exact = run('reference', *make_inputs(case), case[-2])
    x, kernels, grad = make_inputs(case, dtype)
    fast = run('tiled', x, kernels, grad, case[-2])
    reference = run('reference', x, kernels, grad, case[-2])
    for ours, theirs, truth in zip(fast, reference, exact):
        assert ours.dtype == dtype
        error = (ours.double() - truth).abs().max()
        assert error <= 2 * (theirs.double() - truth).abs().max() + 1e-6


def test_default_path_is_the_tap_loop_and_export_uses_the_reference():
    x, kernels, _ = make_inputs(CASES[0], torch.float32)
    x.requires_grad_(True)
    fast_node = LocalFilter.__name__ + 'Backward'
    assert type(local_filter(x, kernels, 3).grad_fn).__name__ == fast_node
    with use_implementation('reference'):
        assert type(local_filter(x, kernels, 3).grad_fn).__name__ != fast_node


def test_bfloat16_autocast_gives_the_autocast_dtype():
    x, kernels, _ = make_inputs(CASES[0], torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = local_filter(x, kernels.bfloat16(), 3)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), local_filter_reference(x, kernels, 3), atol=0.05,
                               rtol=0.05)


@pytest.mark.parametrize('arguments, message', [
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(kernels=torch.rand(1, 1, 8, 3, 3)), 'kernels have 8 taps'),
    (dict(kernels=torch.rand(1, 1, 9, 4, 3)), 'exceeds scale_factor=1'),
])
def test_bad_arguments_are_named(arguments, message):
    call = dict(x=torch.randn(1, 2, 3, 3), kernels=torch.rand(1, 1, 9, 3, 3), kernel_size=3)
    call.update(arguments)
    with pytest.raises(ValueError, match=message):
        local_filter(**call)
