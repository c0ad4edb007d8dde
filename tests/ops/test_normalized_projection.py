"""Normalised projection (``W norm(x) + b`` without the normalised copy) against its reference:
outputs and every gradient in float64, gradcheck of the fused Function, the ratio rule
err(fast) <= 2 * err(reference in the same precision) in float32, and the switch.
"""
import pytest
import torch

import mmdynup.ops.normalized_projection as normalized_projection
from mmdynup.ops.dispatch import use_implementation
from mmdynup.ops.normalized_projection import (NormalizedProjection, group_norm_projection,
                                               layer_norm_projection)

# (num_groups or None for LayerNorm, with norm affine parameters, with projection bias)
CASES = [(None, True, True), (None, False, False), (2, True, True), (3, False, True)]
NAMES = ('output', 'grad x', 'grad norm weight', 'grad norm bias', 'grad weight', 'grad bias')


def make_inputs(case, dtype=torch.float64, seed=0):
    groups, affine, with_bias = case
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    inputs = dict(x=2 * randn(2, 6, 5, 7) + 1,  # off-centre: the statistics matter
                  norm_weight=randn(6) if affine else None, norm_bias=randn(6) if affine else None,
                  weight=randn(4, 6), bias=randn(4) if with_bias else None)
    return inputs, randn(2, 4, 5, 7)


def run(case, inputs, grad, impl):
    """Output and the gradient of every tensor input (None where absent), on clones."""
    leaves = {name: None if value is None else value.clone().requires_grad_()
              for name, value in inputs.items()}
    groups = case[0]
    if groups is None:
        out = layer_norm_projection(leaves['x'], leaves['norm_weight'], leaves['norm_bias'],
                                    1e-5, leaves['weight'], leaves['bias'], impl=impl)
    else:
        out = group_norm_projection(leaves['x'], groups, leaves['norm_weight'],
                                    leaves['norm_bias'], 1e-5, leaves['weight'], leaves['bias'],
                                    impl=impl)
    out.backward(grad)
    return (out.detach(), *(None if leaf is None else leaf.grad for leaf in leaves.values()))


@pytest.mark.parametrize('chunks', ['one chunk', 'one pixel per chunk'])
@pytest.mark.parametrize('case', CASES)
def test_float64_matches_reference(case, chunks, monkeypatch):
    if chunks == 'one pixel per chunk':
        monkeypatch.setattr(normalized_projection, 'CHUNK_ELEMENTS', 1)
    inputs, grad = make_inputs(case)
    for name, got, want in zip(NAMES, run(case, inputs, grad, 'tiled'),
                               run(case, inputs, grad, 'reference')):
        if want is None:
            assert got is None, name
            continue
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0, msg=name)


@pytest.mark.parametrize('groups', [None, 2])
def test_gradcheck(groups):
    inputs, _ = make_inputs((groups, True, True))
    leaves = [value.requires_grad_() for value in inputs.values()]
    assert torch.autograd.gradcheck(
        lambda x, gamma, beta, weight, bias: NormalizedProjection.apply(
            x, gamma, beta, weight, bias, 1e-5, groups), leaves)


@pytest.mark.parametrize('case', CASES[::2])
def test_float32_ratio_rule(case):
    inputs, grad = make_inputs(case, torch.float32)
    exact = run(case, {name: None if value is None else value.double()
                       for name, value in inputs.items()}, grad.double(), 'reference')
    fast, reference = run(case, inputs, grad, 'tiled'), run(case, inputs, grad, 'reference')
    for name, fast_value, reference_value, exact_value in zip(NAMES, fast, reference, exact):
        assert fast_value.dtype == torch.float32, name
        fast_error = (fast_value.double() - exact_value).abs().max()
        reference_error = (reference_value.double() - exact_value).abs().max()
        assert fast_error <= 2 * reference_error, (name, fast_error, reference_error)


def test_switch_and_autocast_take_the_reference(monkeypatch):
    inputs, _ = make_inputs(CASES[0], torch.float32)
    calls = []
    apply = NormalizedProjection.apply
    monkeypatch.setattr(NormalizedProjection, 'apply',
                        lambda *args: calls.append(1) or apply(*args))
    arguments = (inputs['x'], inputs['norm_weight'], inputs['norm_bias'], 1e-5, inputs['weight'],
                 inputs['bias'])
    layer_norm_projection(*arguments)  # CPU default: the fast path
    with use_implementation('reference'):
        layer_norm_projection(*arguments)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer_norm_projection(*arguments)
    assert calls == [1] and out.dtype == torch.bfloat16  # autocast's own dtype policy


def test_group_count_must_divide_the_channels():
    inputs, _ = make_inputs(CASES[2])
    with pytest.raises(ValueError, match='num_groups=4'):
        group_norm_projection(inputs['x'], 4, None, None, 1e-5, inputs['weight'], None)
