"""Fast reassembly (tiled pure PyTorch) against the reference, and the implementation switch.

Tolerances: float64 agrees to 1e-10 (only the summation order differs); float32 and bfloat16
follow the ratio rule err(fast) <= 2 * err(reference in the same precision), both measured
against the float64 reference on the same (rounded) inputs, for the output and both gradients.
"""
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mmdynup.ops.reassembly as reassembly
from mmdynup.ops.dispatch import (IMPLEMENTATIONS, active_implementation,
                                  resolve_implementation, use_implementation)
from mmdynup.ops.reassembly import (GatedReassembly, Reassembly, TiledPrimitives,
                                    gated_reassemble, reassemble, reassemble_reference)

# (batch, channels, groups, low-res (H, W), output (oH, oW), kernel_size, scale_factor)
CASES = [
    (2, 6, 1, (5, 7), (10, 14), 5, 2),
    (1, 8, 2, (4, 3), (7, 5), 3, 2),     # odd output: top-left window of the 2x grid
    (3, 6, 3, (3, 5), (12, 20), 5, 4),
    (1, 4, 1, (3, 2), (11, 6), 3, 4),
    (2, 4, 4, (1, 1), (2, 2), 5, 2),     # every tap but the centre reads padding
]


def make_inputs(case, dtype=torch.float64, seed=0):
    batch, channels, groups, low, out, kernel_size, scale_factor = case
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, *low, generator=generator, dtype=torch.float64)
    kernels = torch.randn(batch, groups, kernel_size ** 2, *out, generator=generator,
                          dtype=torch.float64).softmax(2)
    grad = torch.randn(batch, channels, *out, generator=generator, dtype=torch.float64)
    return x.to(dtype), kernels.to(dtype), grad.to(dtype)


def run(impl, x, kernels, grad, kernel_size, scale_factor):
    """Output and (grad x, grad kernels) of one implementation on clones of the inputs."""
    x = x.clone().requires_grad_()
    kernels = kernels.clone().requires_grad_()
    out = reassemble(x, kernels, kernel_size, scale_factor, impl=impl)
    out.backward(grad)
    return out.detach(), x.grad, kernels.grad


def assert_ratio_rule(fast, reference, exact, names, dtype):
    """err(fast) <= 2 * err(reference), both in ``dtype``, against float64 ``exact``."""
    for name, fast_value, reference_value, exact_value in zip(names, fast, reference, exact):
        assert fast_value.dtype == dtype, name
        fast_error = (fast_value.double() - exact_value).abs().max()
        reference_error = (reference_value.double() - exact_value).abs().max()
        assert fast_error <= 2 * reference_error, (name, fast_error, reference_error)


@pytest.mark.parametrize('case', CASES)
def test_float64_matches_reference(case, tile_budget):
    x, kernels, grad = make_inputs(case)
    kernel_size, scale_factor = case[-2:]
    expected = run('reference', x, kernels, grad, kernel_size, scale_factor)
    result = run('tiled', x, kernels, grad, kernel_size, scale_factor)
    for name, got, want in zip(('output', 'grad x', 'grad kernels'), result, expected):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', CASES[:3])
def test_low_precision_ratio_rule(case, dtype, tile_budget):
    x, kernels, grad = make_inputs(case, dtype)
    kernel_size, scale_factor = case[-2:]
    exact = run('reference', x.double(), kernels.double(), grad.double(), kernel_size,
                scale_factor)
    reference = run('reference', x, kernels, grad, kernel_size, scale_factor)
    fast = run('tiled', x, kernels, grad, kernel_size, scale_factor)
    assert_ratio_rule(fast, reference, exact, ('output', 'grad x', 'grad kernels'), dtype)


def test_strided_inputs(tile_budget):
    """Channels-last and permuted inputs (SAPA's projections are channels-last views) give the
    same numbers as contiguous ones."""
    case = CASES[1]
    x, kernels, grad = make_inputs(case)
    expected = run('reference', x, kernels, grad, *case[-2:])
    strided = (x.contiguous(memory_format=torch.channels_last),
               kernels.transpose(-1, -2).contiguous().transpose(-1, -2),
               grad.contiguous(memory_format=torch.channels_last))
    for got, want in zip(run('tiled', *strided, *case[-2:]), expected):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_gradcheck_tiled_function(monkeypatch):
    monkeypatch.setattr(reassembly, 'CPU_TILE_ELEMENTS', 1)
    x, kernels, _ = make_inputs((2, 4, 2, (3, 4), (5, 8), 3, 2))
    x.requires_grad_()
    kernels.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: Reassembly.apply(a, b, 3, 2, TiledPrimitives), (x, kernels))


def test_only_requested_gradients():
    x, kernels, grad = make_inputs(CASES[0])
    kernels.requires_grad_()
    reassemble(x, kernels, 5, 2, impl='tiled').backward(grad)
    assert x.grad is None and kernels.grad is not None


class LargestAllocation(TorchDispatchMode):
    """Records the largest tensor (in elements) that any ATen op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, (tuple, list)) else [result]:
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.untyped_storage().nbytes()
                                   // value.element_size())
        return result


@pytest.mark.parametrize('impl,bound', [('tiled', 2), ('reference', None)])
def test_no_tensor_larger_than_the_output(impl, bound, tile_budget):
    """The tiled path never forms a k*k- (or s*s-) times larger tensor, forward or backward,
    even when one tile holds the whole input; the reference does (which is why the fast path
    exists)."""
    case = (2, 16, 1, (12, 12), (24, 24), 5, 2)
    x, kernels, grad = make_inputs(case, torch.float32)
    x.requires_grad_()
    kernels.requires_grad_()
    with LargestAllocation() as recorder:
        reassemble(x, kernels, 5, 2, impl=impl).backward(grad)
    biggest_operand = max(x.numel(), kernels.numel(), grad.numel())
    if bound is None:
        assert recorder.largest >= 20 * grad.numel()  # k*k times the output
    else:
        assert recorder.largest <= bound * biggest_operand


def test_autocast_mixed_dtypes_match_reference():
    """Under CPU autocast the kernels come out of softmax in float32 and x in bfloat16."""
    x, kernels, _ = make_inputs(CASES[0])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        fast = reassemble(x.bfloat16(), kernels.float(), 5, 2, impl='tiled')
        reference = reassemble(x.bfloat16(), kernels.float(), 5, 2, impl='reference')
    assert fast.dtype == reference.dtype == torch.bfloat16
    exact = reassemble_reference(x.bfloat16().double(), kernels.bfloat16().double(), 5, 2)
    assert ((fast.double() - exact).abs().max()
            <= 2 * (reference.double() - exact).abs().max())


def test_mismatched_dtypes_outside_autocast_name_both():
    x, kernels, _ = make_inputs(CASES[0])
    with pytest.raises(TypeError, match='x .*float32.* kernels .*float64'):
        reassemble(x.float(), kernels, 5, 2)


@pytest.mark.parametrize('kwargs,message', [
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(scale_factor=0), 'scale_factor must be an integer >= 1'),
    (dict(impl='fast'), 'impl must be one of'),
])
def test_bad_arguments_are_named(kwargs, message):
    x, kernels, _ = make_inputs(CASES[0])
    arguments = dict(kernel_size=5, scale_factor=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        reassemble(x, kernels, **arguments)


# --- the implementation switch ----------------------------------------------------------------


def uses_fast_path(out):
    return type(out.grad_fn).__name__ == 'ReassemblyBackward'


def test_fast_path_is_the_default_on_cpu():
    x, kernels, _ = make_inputs(CASES[0])
    kernels.requires_grad_()
    assert active_implementation() == 'auto'
    assert resolve_implementation(None, x, kernels) == 'tiled'
    assert uses_fast_path(reassemble(x, kernels, 5, 2))


def test_use_implementation_is_scoped_and_nests():
    x, kernels, _ = make_inputs(CASES[0])
    kernels.requires_grad_()
    with use_implementation('reference'):
        assert not uses_fast_path(reassemble(x, kernels, 5, 2))
        with use_implementation('tiled'):
            assert uses_fast_path(reassemble(x, kernels, 5, 2))
        assert not uses_fast_path(reassemble(x, kernels, 5, 2))
        # An explicit argument beats the enclosing block.
        assert uses_fast_path(reassemble(x, kernels, 5, 2, impl='tiled'))
    assert uses_fast_path(reassemble(x, kernels, 5, 2))


def test_use_implementation_restores_after_an_error():
    with pytest.raises(RuntimeError):
        with use_implementation('reference'):
            raise RuntimeError('inside')
    assert active_implementation() == 'auto'


def test_use_implementation_rejects_unknown_names():
    accepted = re.escape(str(IMPLEMENTATIONS))
    with pytest.raises(ValueError, match=f"impl must be one of {accepted}, got 'cuda'"):
        with use_implementation('cuda'):
            pass


class ReassemblyModule(torch.nn.Module):
    def forward(self, x, kernels):
        return reassemble(x, kernels, 5, 2)


def test_export_and_compile_take_the_reference():
    """``torch.export`` (also under the ONNX exporter) and ``torch.compile`` see plain ops: 'auto'
    resolves to the reference there, and the graph is the reference's."""
    x, kernels, _ = make_inputs(CASES[0], torch.float32)
    exported = torch.export.export(ReassemblyModule(), (x, kernels))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == 'call_function'}
    assert 'aten.einsum.default' in targets
    compiled = torch.compile(ReassemblyModule(), backend='eager', fullgraph=True)
    torch.testing.assert_close(compiled(x, kernels), reassemble_reference(x, kernels, 5, 2))


# --- gated reassembly (FADE's output) -----------------------------------------------------------

GATED_NAMES = ('output', 'grad x', 'grad kernels', 'grad gate', 'grad guide')


def run_gated(impl, x, kernels, grad, kernel_size, scale_factor, seed=1):
    """Output and the four input gradients of :func:`gated_reassemble` on clones of the inputs,
    with a gate in (0, 1) and a guide drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    gate = torch.rand(grad.shape[0], 1, *grad.shape[2:], generator=generator,
                      dtype=torch.float64).to(x.dtype)
    guide = torch.randn(grad.shape, generator=generator, dtype=torch.float64).to(x.dtype)
    leaves = [tensor.clone().requires_grad_() for tensor in (x, kernels, gate, guide)]
    out = gated_reassemble(leaves[0], leaves[1], kernel_size, scale_factor, *leaves[2:],
                           impl=impl)
    out.backward(grad)
    return (out.detach(), *(leaf.grad for leaf in leaves))


@pytest.mark.parametrize('case', CASES[:3])
def test_gated_float64_matches_reference(case, tile_budget):
    x, kernels, grad = make_inputs(case)
    expected = run_gated('reference', x, kernels, grad, *case[-2:])
    for name, got, want in zip(GATED_NAMES, run_gated('tiled', x, kernels, grad, *case[-2:]),
                               expected):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_gated_low_precision_ratio_rule(dtype):
    x, kernels, grad = make_inputs(CASES[0])
    exact = run_gated('reference', x, kernels, grad, *CASES[0][-2:])
    rounded = [tensor.to(dtype) for tensor in (x, kernels, grad)]
    assert_ratio_rule(run_gated('tiled', *rounded, *CASES[0][-2:]),
                      run_gated('reference', *rounded, *CASES[0][-2:]), exact, GATED_NAMES,
                      dtype)


def test_gated_gradcheck():
    x, kernels, _ = make_inputs(CASES[1])
    gate = torch.rand(1, 1, *kernels.shape[-2:], dtype=torch.float64)
    guide = torch.randn(1, x.shape[1], *kernels.shape[-2:], dtype=torch.float64)
    leaves = [tensor.requires_grad_() for tensor in (x, kernels, gate, guide)]
    assert torch.autograd.gradcheck(
        lambda *args: GatedReassembly.apply(*args, 3, 2, TiledPrimitives), leaves)


def test_gated_rejects_a_guide_of_another_shape():
    x, kernels, grad = make_inputs(CASES[0])
    with pytest.raises(ValueError, match='guide must be'):
        gated_reassemble(x, kernels, 5, 2, grad[:, :1], grad[:, :-1])
