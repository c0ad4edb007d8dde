"""Triton kernels (reassembly and SAPA similarity) against the references.

Without a CUDA device they run through Triton's interpreter: this file sets
``TRITON_INTERPRET=1`` before anything imports ``triton`` (Triton reads it when its own and our
kernels are defined). Shapes are tiny because the interpreter is slow (the file stays well under
a minute). On a CUDA machine the same tests run the compiled kernels (``tools/gpu_check.sh``).
"""
import os
import sys

import pytest
import torch

if not torch.cuda.is_available() and 'triton' not in sys.modules:
    os.environ.setdefault('TRITON_INTERPRET', '1')

from mmdynup.ops.dispatch import resolve_implementation, triton_available  # noqa: E402
from mmdynup.ops.local_similarity import local_similarity_reference  # noqa: E402
from mmdynup.ops.reassembly import Reassembly, reassemble, reassemble_reference  # noqa: E402
from mmdynup.ops.similarity_kernels import LocalSimilarity, fast_local_similarity  # noqa: E402

pytestmark = pytest.mark.skipif(not triton_available(), reason='triton is not installed')


def interpreter_active() -> bool:
    """Whether Triton itself was imported in interpreter mode (its ``tl`` helpers are
    interpreted), not merely whether the variable is set now."""
    import triton.language as tl
    return type(tl.zeros).__name__ == 'InterpretedFunction'


@pytest.fixture(params=['interpreter', 'cuda'])
def device(request):
    if request.param == 'interpreter' and not interpreter_active():
        pytest.skip('CUDA machine: the compiled kernels are tested' if torch.cuda.is_available()
                    else 'triton was imported before TRITON_INTERPRET=1 could be set: run this '
                         'file on its own')
    if request.param == 'cuda' and (interpreter_active() or not torch.cuda.is_available()):
        pytest.skip('needs a CUDA device and compiled (not interpreted) Triton')
    return torch.device('cpu' if request.param == 'interpreter' else 'cuda')


def triton_primitives():
    from mmdynup.ops.triton_kernels import TritonPrimitives
    return TritonPrimitives


# (batch, channels, groups, low-res (H, W), output (oH, oW), kernel_size, scale_factor)
CASES = [
    (2, 6, 2, (3, 4), (6, 7), 3, 2),     # odd output, two groups
    (1, 40, 1, (2, 3), (4, 6), 5, 2),    # channels > one channel block (32)
    (3, 3, 3, (2, 2), (7, 8), 3, 4),     # scale 4, batch 3, one channel per group
]


def make_inputs(case, device, dtype=torch.float64):
    batch, channels, groups, low, out, kernel_size, _ = case
    generator = torch.Generator().manual_seed(0)
    tensors = dict(
        x=torch.randn(batch, channels, *low, generator=generator, dtype=torch.float64),
        kernels=torch.randn(batch, groups, kernel_size ** 2, *out, generator=generator,
                            dtype=torch.float64).softmax(2),
        grad=torch.randn(batch, channels, *out, generator=generator, dtype=torch.float64),
        logit_grad=torch.randn(batch, kernel_size ** 2, *out, generator=generator,
                               dtype=torch.float64))
    return {name: value.to(device, dtype) for name, value in tensors.items()}


def reassembly_results(impl, inputs, kernel_size, scale_factor):
    x = inputs['x'].clone().requires_grad_()
    kernels = inputs['kernels'].clone().requires_grad_()
    out = reassemble(x, kernels, kernel_size, scale_factor, impl=impl)
    out.backward(inputs['grad'])
    return out.detach(), x.grad, kernels.grad


def similarity_results(impl, inputs, kernel_size, scale_factor):
    query = inputs['grad'].clone().requires_grad_()  # (B, d, oH, oW) with d = channels
    key = inputs['x'].clone().requires_grad_()
    if impl == 'reference':
        logits = local_similarity_reference(query, key, kernel_size, scale_factor)
    else:
        logits = fast_local_similarity(query, key, kernel_size, scale_factor, impl)
    logits.backward(inputs['logit_grad'])
    return logits.detach(), query.grad, key.grad


@pytest.mark.parametrize('results', [reassembly_results, similarity_results])
@pytest.mark.parametrize('case', CASES)
def test_float64_matches_reference(case, results, device):
    inputs = make_inputs(case, device)
    expected = results('reference', inputs, *case[-2:])
    for got, want in zip(results('triton', inputs, *case[-2:]), expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('results', [reassembly_results, similarity_results])
def test_low_precision_ratio_rule(results, dtype, device):
    if dtype == torch.bfloat16 and device.type == 'cpu':
        pytest.skip("Triton's interpreter rounds float32 -> bfloat16 toward zero; compiled "
                    "kernels round to nearest even (checked on CUDA)")
    case = CASES[1]
    inputs = make_inputs(case, device, dtype)
    exact = results('reference', {name: value.double() for name, value in inputs.items()},
                    *case[-2:])
    reference = results('reference', inputs, *case[-2:])
    for fast_value, reference_value, exact_value in zip(
            results('triton', inputs, *case[-2:]), reference, exact):
        assert fast_value.dtype == dtype
        fast_error = (fast_value.double() - exact_value).abs().max()
        reference_error = (reference_value.double() - exact_value).abs().max()
        assert fast_error <= 2 * reference_error, (fast_error, reference_error)


def test_gradcheck(device):
    """Fast-mode gradcheck (a few random directions) keeps the interpreter quick."""
    primitives = triton_primitives()
    inputs = make_inputs((1, 3, 1, (2, 3), (4, 5), 3, 2), device)
    x = inputs['x'].requires_grad_()
    kernels = inputs['kernels'].requires_grad_()
    query = inputs['grad'].requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: Reassembly.apply(a, b, 3, 2, primitives), (x, kernels), fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda q, k: LocalSimilarity.apply(q, k, 3, 2, primitives), (query, x), fast_mode=True)


def test_auto_picks_triton_on_cuda_only(device):
    inputs = make_inputs(CASES[0], device)
    out = reassemble(inputs['x'], inputs['kernels'].requires_grad_(), 3, 2)
    assert type(out.grad_fn).__name__ == 'ReassemblyBackward'
    torch.testing.assert_close(out, reassemble_reference(inputs['x'], inputs['kernels'], 3, 2),
                               atol=1e-10, rtol=0)
    expected = 'triton' if device.type == 'cuda' else 'tiled'
    assert resolve_implementation(None, inputs['x']) == expected
