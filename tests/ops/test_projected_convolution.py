"""Projected convolution (``conv(W_p x + b_p)``, FADE's encoder branch) against its reference:
outputs and every gradient in float64, with and without the shared input, gradcheck, what is
saved, and the layouts that fall back to the reference."""
import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from mmdynup.ops.projected_convolution import ProjectedConvolution, projected_convolution

# (embedding E, groups of the k x k convolution, kernel size, with biases)
CASES = [(6, 1, 3, True), (4, 4, 3, True), (6, 2, 1, False), (5, 1, 5, True)]


def make_inputs(case, seed=0):
    embedding, groups, kernel_size, with_bias = case
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    return dict(x=randn(2, 7, 6, 5), projection_weight=randn(embedding, 7, 1, 1),
                projection_bias=randn(embedding) if with_bias else None,
                weight=randn(3 * groups, embedding // groups, kernel_size, kernel_size),
                bias=randn(3 * groups) if with_bias else None), randn, groups


def run(inputs, groups, grads, impl):
    """Output and every input's gradient; the shared x also feeds ``x * 2`` (a second consumer)."""
    leaves = {name: None if value is None else value.clone().requires_grad_()
              for name, value in inputs.items()}
    out, shared = projected_convolution(*leaves.values(), groups=groups, share_input=True,
                                        impl=impl)
    torch.autograd.backward([out, shared * 2], grads)
    return [out.detach()] + [None if leaf is None else leaf.grad for leaf in leaves.values()]


@pytest.mark.parametrize('case', CASES)
def test_float64_matches_reference(case):
    inputs, randn, groups = make_inputs(case)
    grads = [randn(2, 3 * groups, 6, 5), randn(2, 7, 6, 5)]
    for index, (fast, reference) in enumerate(zip(run(inputs, groups, grads, 'tiled'),
                                                  run(inputs, groups, grads, 'reference'))):
        if reference is None:
            assert fast is None, index
            continue
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=0, msg=str(index))


def test_without_a_second_consumer():
    inputs, randn, groups = make_inputs(CASES[0])
    grad = randn(2, 3, 6, 5)
    results = []
    for impl in ('tiled', 'reference'):
        x = inputs['x'].clone().requires_grad_()
        arguments = [value for name, value in inputs.items() if name != 'x']
        projected_convolution(x, *arguments, impl=impl).backward(grad)
        results.append(x.grad)
    torch.testing.assert_close(*results, atol=1e-12, rtol=0)


def test_gradcheck():
    inputs, _, groups = make_inputs(CASES[1])
    leaves = [value.requires_grad_() for value in inputs.values()]
    assert torch.autograd.gradcheck(
        lambda x, pw, pb, w, b: ProjectedConvolution.apply(x, pw.flatten(1), pb, w, b, groups),
        leaves)


@pytest.mark.parametrize('impl,projection_saved', [('tiled', False), ('reference', True)])
def test_saves_no_projection(impl, projection_saved):
    """The fused path saves x and the weights only; the reference keeps the E-channel
    projection of x (which is what the fused path exists to avoid)."""
    inputs, _, groups = make_inputs(CASES[0])
    x = inputs['x'].requires_grad_()
    shapes = []
    with saved_tensors_hooks(lambda tensor: shapes.append(tuple(tensor.shape)) or tensor,
                             lambda tensor: tensor):
        projected_convolution(*inputs.values(), groups=groups, impl=impl)
    assert ((2, 6, 6, 5) in shapes) is projection_saved
    assert tuple(x.shape) in shapes


def test_channels_last_input_takes_the_reference():
    inputs, _, groups = make_inputs(CASES[0])
    inputs['x'] = inputs['x'].contiguous(memory_format=torch.channels_last).requires_grad_()
    out = projected_convolution(*inputs.values(), groups=groups, impl='tiled')
    assert 'ProjectedConvolution' not in type(out.grad_fn).__name__
